"""Project settings from `fapo.toml` (shared by all tenants), validated fail-closed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field, ValidationError

from fapo.errors import FapoError, validation_problem
from fapo.records import Record as _Strict


class Defaults(_Strict):
    task_model: str = "sim:default"
    agent: str = "builtin"
    concurrency: int = Field(8, ge=1, le=256)


class Paths(_Strict):
    tenants: str = "tenants"
    runs: str = "runs"
    cache: str = ".fapo/cache.sqlite"


class Price(_Strict):
    input: float = Field(ge=0, description="USD per million input tokens")
    output: float = Field(ge=0, description="USD per million output tokens")


class AgentSettings(_Strict):
    binary: str | None = None
    model: str | None = None
    max_turns: int = Field(30, ge=1)
    timeout_s: float = Field(900, gt=0)
    extra_args: list[str] = Field(default_factory=list)
    base_url: str | None = None  # a compatible endpoint (see docs/agents.md)
    api_key_env: str | None = None  # name of the variable holding the agent's key
    pass_env: list[str] = Field(default_factory=list)  # extra variables the agent may see


class Settings(_Strict):
    root: Path = Path(".")
    defaults: Defaults = Defaults()
    paths: Paths = Paths()
    rate_limits: dict[str, float] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    agents: dict[str, AgentSettings] = Field(default_factory=dict)

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    @property
    def runs_dir(self) -> Path:
        return self.path(self.paths.runs)

    @property
    def tenants_dir(self) -> Path:
        return self.path(self.paths.tenants)

    @property
    def cache_path(self) -> Path:
        return self.path(self.paths.cache)

    def agent(self, kind: str) -> AgentSettings:
        return self.agents.get(kind, AgentSettings())


def find_root(start: Path | None = None) -> Path:
    """The nearest folder upwards holding fapo.toml, else the current directory."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "fapo.toml").is_file():
            return d
    return here


def load_settings(root: Path | None = None) -> Settings:
    root = find_root(root)
    path = root / "fapo.toml"
    data: dict = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise FapoError(f"{path}: invalid TOML: {exc}; fix the syntax") from None
    try:
        return Settings(root=root, **data)
    except ValidationError as exc:
        _, key, msg = validation_problem(exc)
        raise FapoError(f"{path}: key '{key}': {msg}; fix it in fapo.toml") from None

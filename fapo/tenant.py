"""Loading a tenant folder into an immutable `Tenant`, and overlaying a variant's mutable files.

Mutable files (what a variant may differ in): prompts/**.md, params.yaml, chain.py, structure.yaml.
Everything else in the folder (tenant.yaml, scorer, checks, data, corpus, …) is immutable in a run.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import math
import os
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from fapo.artifacts import sha256_text
from fapo.context import ChainContext
from fapo.data import iter_rows, split_problems
from fapo.errors import FapoError, read_text, validation_problem
from fapo.records import Example, Score
from fapo.settings import Settings, load_settings
from fapo.spec import Level, TenantSpec

#: Files a variant may differ in, by level (structure may also create new prompt files).
LEVEL_SCOPE: dict[str, tuple[str, ...]] = {
    "prompt": ("prompts/*.md", "prompts/**/*.md"),
    "parameter": ("params.yaml",),
    "structure": ("structure.yaml", "prompts/*.md", "prompts/**/*.md"),
    "code": ("chain.py", "prompts/*.md", "prompts/**/*.md"),
}
#: Files of a lower level a candidate may carry as the other half of a **joint** candidate: one
#: prompt of the step whose parameter it changes (fapo/joint.py; review's one_concern checks it).
JOINT_SCOPE: dict[str, tuple[str, ...]] = {"parameter": ("prompts/*.md", "prompts/**/*.md")}
MUTABLE = ("prompts/*.md", "prompts/**/*.md", "params.yaml", "chain.py", "structure.yaml")
_SKIP_DIRS = {"__pycache__", ".pytest_cache", "fixes"}


def is_mutable(rel: str) -> bool:
    return any(fnmatch.fnmatch(rel, pat) for pat in MUTABLE)


def in_scope(rel: str, level: Level) -> bool:
    """May a candidate of `level` change `rel` (its own files, or a joint candidate's half)?"""
    pats = LEVEL_SCOPE[level] + JOINT_SCOPE.get(level, ())
    return any(fnmatch.fnmatch(rel, pat) for pat in pats)


def own_scope(rel: str, level: Level) -> bool:
    """Is `rel` one of `level`'s own files (not a joint candidate's lower-level half)?"""
    return any(fnmatch.fnmatch(rel, pat) for pat in LEVEL_SCOPE[level])


def _yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location, for precise messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def load_yaml(path: Path, text: str | None = None) -> Any:
    text = read_text(path) if text is None else text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FapoError(f"{where}: malformed YAML ({problem}); fix the syntax") from None


def read_tenant_spec(path: Path) -> TenantSpec:
    if not path.is_file():
        raise FapoError(f"{path}: not found; a tenant folder needs tenant.yaml (try `fapo init`)")
    text = read_text(path)
    data = load_yaml(path, text)
    if not isinstance(data, dict):
        raise FapoError(f"{path}: must be a YAML mapping of keys (name, models, scope, …)")
    try:
        return TenantSpec(**data)
    except ValidationError as exc:
        loc, key, msg = validation_problem(exc)
        line = _yaml_line(text, loc)
        where = f"{path}:{line}" if line else str(path)
        if msg.startswith("unknown key"):
            msg += " (`fapo schema` lists every key)"
        raise FapoError(f"{where}: key '{key}': {msg}") from None


def _import_file(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except FapoError:
        raise
    except Exception as exc:
        raise FapoError(
            f"{path}:{_user_line(exc, path)}: raised {type(exc).__name__}: {exc} "
            "on import; fix the file"
        ) from None
    return mod


def _user_line(exc: BaseException, path: Path | str) -> int | str:
    """The deepest traceback line inside `path` (so the message points at the user's code)."""
    line: int | str = "?"
    for fs in traceback.extract_tb(exc.__traceback__):
        if fs.filename == str(path):
            line = fs.lineno or "?"
    return line


@dataclass(frozen=True)
class Tenant:
    """A tenant folder plus an overlay of mutable files (the variant). Immutable; see `variant`."""

    root: Path
    spec: TenantSpec
    settings: Settings
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    # -- variant files ---------------------------------------------------------------------
    def variant(self, overrides: Mapping[str, str | None]) -> Tenant:
        """A copy whose mutable files are replaced (None deletes a file, e.g. structure.yaml)."""
        files = dict(self.files)
        for rel, text in overrides.items():
            if not is_mutable(rel):
                raise FapoError(f"{rel}: not a mutable tenant file (allowed: {', '.join(MUTABLE)})")
            if text is None:
                files.pop(rel, None)
            else:
                files[rel] = text
        return replace(self, files=files)

    def fingerprint(self) -> str:
        """Hash of the mutable files: identical variants share evaluations."""
        return sha256_text("\0".join(f"{k}\0{v}" for k, v in sorted(self.files.items())))[:16]

    @property
    def prompts(self) -> dict[str, str]:
        return {
            rel[len("prompts/") : -len(".md")]: text
            for rel, text in sorted(self.files.items())
            if rel.startswith("prompts/")
        }

    @cached_property
    def params(self) -> dict[str, Any]:
        text = self.files.get("params.yaml")
        if text is None:
            return {}
        path = self.root / "params.yaml"
        data = load_yaml(path, text) or {}
        if not isinstance(data, dict):
            raise FapoError(f"{path}: must be a mapping of parameter: value")
        for key, value in data.items():
            ps = self.spec.params.get(key)
            line = _yaml_line(text, (key,))
            where = f"{path}:{line}" if line else str(path)
            if ps is None:
                raise FapoError(
                    f"{where}: parameter '{key}' is not declared in tenant.yaml 'params'; "
                    "declare it with bounds or remove it"
                )
            problem = ps.check(value)
            if problem:
                raise FapoError(
                    f"{where}: parameter '{key}': {problem}; use a value inside its bounds"
                )
        for key in self.spec.params:
            if key not in data:
                raise FapoError(f"{path}: declared parameter '{key}' has no value; add `{key}: …`")
        return data

    def raw_params(self) -> dict[str, Any]:
        """params.yaml as written, a bad or missing value replaced by an allowed one: validation
        builds with these so a bad parameter (reported once, by `params`) hides no later problem."""
        try:
            data = load_yaml(self.root / "params.yaml", self.files.get("params.yaml", "")) or {}
        except FapoError:
            data = {}
        data = dict(data) if isinstance(data, dict) else {}
        for key, ps in self.spec.params.items():
            if key not in data or ps.check(data[key]) is not None:
                data[key] = _allowed_value(ps)
        return data

    @cached_property
    def structure(self) -> dict[str, Any] | None:
        text = self.files.get("structure.yaml")
        if text is None:
            return None
        return load_yaml(self.root / "structure.yaml", text) or {}

    # -- immutable parts -------------------------------------------------------------------
    def data_path(self, split: str) -> Path:
        rel = getattr(self.spec.data, split, None)
        if rel is None:
            raise FapoError(f"unknown split '{split}'; use train, val or test")
        return self.root / rel

    def examples(self, split: str) -> Iterator[Example]:
        return iter_rows(self.data_path(split))

    def data_problems(self) -> list[str]:
        """Every problem of the three splits (bad rows, an empty split, ids shared by splits)."""
        return split_problems({s: self.data_path(s) for s in ("train", "val", "test")})

    def check_data(self) -> None:
        """Raise the first data problem: `eval` and `run` refuse what `validate` reports."""
        problems = self.data_problems()
        if problems:
            more = f" (and {len(problems) - 1} more; `fapo validate` lists them)"
            raise FapoError(problems[0] + (more if len(problems) > 1 else ""))

    def immutable_hashes(self) -> dict[str, str]:
        """sha256 of every immutable file, to prove a proposal changed none of them."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root).as_posix()
            if p.is_file() and not is_mutable(rel) and not (_SKIP_DIRS & set(p.parts)):
                out[rel] = sha256_text(p.read_bytes())
        return out

    @cached_property
    def scorer(self) -> Callable[[Example, Any], Score]:
        path = self.root / self.spec.scorer
        if not path.is_file():
            raise FapoError(f"{path}: scorer not found; write score(example, prediction) there")
        mod = _import_file(path, f"fapo_tenant_{self.name}_scorer")
        fn = getattr(mod, "score", None)
        if not callable(fn):
            raise FapoError(f"{path}: defines no score(example, prediction) function; add one")

        def scored(example: Example, prediction: Any) -> Score:
            try:
                out = fn(example, prediction)
            except Exception as exc:
                raise FapoError(
                    f"{path}:{_user_line(exc, path)}: score() raised "
                    f"{type(exc).__name__}: {exc} for example '{example.id}'; "
                    "a scorer must handle any prediction (including None)"
                ) from None
            value, details = (out.value, out.details) if isinstance(out, Score) else (out, {})
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or math.isnan(value)
                or not 0.0 <= value <= 1.0
            ):
                raise FapoError(
                    f"{path}: score() returned {value!r} for example '{example.id}'; "
                    "return a float in [0, 1] or fapo.Score(value, details)"
                )
            return Score(float(value), dict(details))

        return scored

    @cached_property
    def checks(self) -> list[Any]:
        from fapo.checks import collect

        if not self.spec.checks:
            return []
        path = self.root / self.spec.checks
        if not path.is_file():
            raise FapoError(f"{path}: checks file named in tenant.yaml not found")
        return collect(_import_file(path, f"fapo_tenant_{self.name}_checks"))

    # -- the chain -------------------------------------------------------------------------
    def chain_module(self) -> types.ModuleType:
        path = self.root / "chain.py"
        text = self.files.get("chain.py")
        if text is None:
            raise FapoError(f"{path}: not found; write build(ctx) returning a StateGraph")
        name = f"fapo_tenant_{self.name.replace('-', '_')}_chain_{self.fingerprint()}"
        mod = types.ModuleType(name)
        mod.__file__ = str(path)
        # Registered so LangGraph can resolve the State's type hints (`from __future__ import
        # annotations` makes them strings looked up in the module's namespace).
        sys.modules[name] = mod
        try:
            exec(compile(text, str(path), "exec"), mod.__dict__)  # noqa: S102 - the tenant's own chain
        except SyntaxError as exc:
            raise FapoError(
                f"{path}:{exc.lineno}: syntax error ({exc.msg}); fix chain.py"
            ) from None
        except Exception as exc:
            raise FapoError(
                f"{path}:{_user_line(exc, path)}: raised {type(exc).__name__}: {exc} "
                "on import; fix chain.py"
            ) from None
        if not callable(getattr(mod, "build", None)):
            raise FapoError(
                f"{path}: defines no build(ctx) function; add one returning a StateGraph"
            )
        return mod

    def build(
        self,
        model_factory: Callable[..., Any],
        *,
        params: Mapping[str, Any] | None = None,
        problems: list[str] | None = None,
    ) -> tuple[Any, ChainContext]:
        """Build the (uncompiled) StateGraph and apply structural transforms from structure.yaml.

        Importing chain.py and calling build(ctx) run under `[defaults] build_timeout_s`: an
        endless loop there is an error, not a hang. `params` and `problems` are for validation
        (build with unchecked parameters; collect prompt problems instead of stopping).
        """
        limit = self.settings.defaults.build_timeout_s
        path = self.root / "chain.py"
        return call_with_time_limit(
            lambda: self._build(model_factory, params, problems),
            limit,
            f"{path}: importing chain.py and build(ctx) did not finish within {limit:g} s "
            "(an endless loop?); fix chain.py or raise [defaults] build_timeout_s in fapo.toml",
        )

    def _build(
        self,
        model_factory: Callable[..., Any],
        params: Mapping[str, Any] | None,
        problems: list[str] | None,
    ) -> tuple[Any, ChainContext]:
        from langgraph.graph import StateGraph

        mod = self.chain_module()
        ctx = ChainContext(
            prompts=self.prompts,
            params=dict(self.params if params is None else params),
            root=self.root,
            model_factory=model_factory,
            problems=problems,
        )
        path = self.root / "chain.py"
        try:
            graph = mod.build(ctx)
        except FapoError:
            raise
        except Exception as exc:
            raise FapoError(
                f"{path}:{_user_line(exc, path)}: build(ctx) raised "
                f"{type(exc).__name__}: {exc}; fix chain.py"
            ) from None
        if not isinstance(graph, StateGraph):
            raise FapoError(
                f"{path}: build(ctx) returned {type(graph).__name__}; return an "
                "uncompiled langgraph StateGraph (do not call .compile())"
            )
        if self.structure:
            from fapo.transforms import apply_structure

            graph = apply_structure(graph, ctx, self.structure, self.root / "structure.yaml")
        return graph, ctx


T = TypeVar("T")


def _allowed_value(ps: Any) -> Any:
    if ps.type == "bool":
        return False
    if ps.type == "choice":
        return ps.choices[0]
    return int(ps.min) if ps.type == "int" else float(ps.min)


class _TimeLimit(BaseException):
    """Raised by the alarm inside user code; a BaseException so `except Exception` there
    cannot swallow it."""


def call_with_time_limit(fn: Callable[[], T], seconds: float, message: str) -> T:
    """`fn()`, or a FapoError(message) after `seconds`.

    On the main thread an interval timer interrupts `fn` exactly where it loops (nothing keeps
    running afterwards). Elsewhere (or with a timer already armed) signals cannot serve: `fn` runs in a daemon thread that is
    abandoned at the limit (the CLI then exits with the error; the thread dies with it).
    """
    # Only where no other interval timer is armed (pytest-timeout, say): theirs must keep going.
    free = signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    if threading.current_thread() is threading.main_thread() and free:

        def on_alarm(signum: int, frame: Any) -> None:
            raise _TimeLimit

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn()
        except _TimeLimit:
            raise FapoError(message) from None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    worker = threading.Thread(target=target, name="fapo-build", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise FapoError(message)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _read_mutable(root: Path) -> dict[str, str]:
    files = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and is_mutable(rel) and not (_SKIP_DIRS & set(p.parts)):
            files[rel] = read_text(p)
    return files


def resolve_tenant_dir(name_or_path: str, settings: Settings) -> Path:
    p = Path(name_or_path)
    for cand in (p, settings.tenants_dir / name_or_path):
        if (cand / "tenant.yaml").is_file():
            return cand.resolve()
    raise FapoError(
        f"tenant '{name_or_path}' not found (looked in {p} and "
        f"{settings.tenants_dir / name_or_path}); give a tenant folder or name"
    )


def escaping_symlinks(root: Path) -> list[str]:
    """Symlinks under `root` whose target lies outside it (e.g. data/val.jsonl -> /etc/passwd)."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            if p.is_symlink() and not p.resolve().is_relative_to(root):
                bad.append(p.relative_to(root).as_posix())
    return sorted(bad)


def load_tenant(
    name_or_path: str | Path,
    settings: Settings | None = None,
    models: Mapping[str, str] | None = None,
) -> Tenant:
    """The tenant folder as a Tenant; `models` replaces roles of tenant.yaml (`--model`)."""
    from fapo.model_overrides import apply_overrides

    settings = settings or load_settings()
    root = resolve_tenant_dir(str(name_or_path), settings)
    escaping = escaping_symlinks(root)
    if escaping:
        raise FapoError(
            f"{root / escaping[0]}: symlink leaves the tenant folder; copy the file in instead "
            f"({len(escaping)} such link{'s' if len(escaping) > 1 else ''})"
        )
    spec = apply_overrides(read_tenant_spec(root / "tenant.yaml"), models)
    return Tenant(root=root, spec=spec, settings=settings, files=_read_mutable(root))

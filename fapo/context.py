"""What `chain.py`'s `build(ctx)` receives: prompts, params, chat models, resources. Nothing else.

Prompts are declared with the variables the chain will supply (`ctx.prompt("answer", "question")`),
so validation and review can check placeholders statically, without running a model.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fapo.errors import FapoError

#: Tenant paths a chain may never open through `ctx.resource` (data and scorer stay sealed).
SEALED_PREFIXES = ("data/", "scorer.py", "checks.py", "tenant.yaml")


def placeholders(text: str) -> set[str]:
    """The `{name}` fields a template uses (`{{` and `}}` are literal braces)."""
    names: set[str] = set()
    for _, field_name, _, _ in string.Formatter().parse(text):
        if field_name is not None and field_name != "":
            names.add(field_name.split(".")[0].split("[")[0])
    return names


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt file bound to the variables the chain promises to supply."""

    name: str
    text: str
    variables: tuple[str, ...]

    def render(self, **values: Any) -> str:
        missing = [v for v in self.variables if v not in values]
        if missing:
            raise FapoError(
                f"prompts/{self.name}.md: render() is missing {', '.join(missing)}; "
                "pass every variable declared in ctx.prompt()"
            )
        return self.text.format(**{k: values[k] for k in self.variables})


@dataclass
class ChainContext:
    """The chain's whole view of the world. Built by the engine; see docs/tenants.md."""

    prompts: Mapping[str, str]
    params: Mapping[str, Any]
    root: Path
    model_factory: Callable[..., Any]
    declared: dict[str, tuple[str, ...]] = field(default_factory=dict)
    functions: dict[str, Callable[..., Any]] = field(default_factory=dict)

    #: Set by validation: prompt problems are collected here instead of stopping the build,
    #: so one `fapo validate` reports all of them.
    problems: list[str] | None = None

    def _problem(self, message: str) -> None:
        if self.problems is None:
            raise FapoError(message)
        self.problems.append(message)

    def prompt(self, name: str, *variables: str) -> PromptTemplate:
        """Declare that the chain renders `prompts/<name>.md` with exactly these variables."""
        if name not in self.prompts:
            self._problem(
                f"chain.py asks for prompt '{name}' but prompts/{name}.md does not exist; "
                "create it or fix the name"
            )
            return PromptTemplate(name, "", tuple(variables))
        text = self.prompts[name]
        try:
            used = placeholders(text)
        except ValueError as exc:
            self._problem(f"prompts/{name}.md: {exc}; write literal braces as {{{{ and }}}}")
            used = set()
        unknown = sorted(used - set(variables))
        if unknown:
            self._problem(
                f"prompts/{name}.md uses {{{unknown[0]}}} which the chain does not supply "
                f"(it supplies: {', '.join(variables) or 'nothing'}); remove the placeholder "
                "or supply it in chain.py"
            )
        self.declared[name] = tuple(variables)
        return PromptTemplate(name, text, tuple(variables))

    def llm(self, role: str = "task", **settings: Any) -> Any:
        """A LangChain chat model for `role` (tenant.yaml `models`), with e.g. temperature,
        max_tokens. Every call is recorded, cached and priced by the engine."""
        return self.model_factory(role, **settings)

    def resource(self, relpath: str) -> Path:
        """Path of a read-only tenant resource (e.g. `corpus/passages.jsonl`)."""
        rel = Path(relpath)
        if rel.is_absolute() or ".." in rel.parts:
            raise FapoError(f"ctx.resource('{relpath}'): use a path relative to the tenant")
        if any(str(rel).startswith(p) for p in SEALED_PREFIXES):
            raise FapoError(
                f"ctx.resource('{relpath}'): the chain may not read data, scorer or checks"
            )
        path = self.root / rel
        if not path.exists():
            raise FapoError(f"ctx.resource('{relpath}'): {path} does not exist")
        return path

    def register(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register a deterministic function that structural transforms may reference by name."""
        self.functions[name] = fn
        return fn

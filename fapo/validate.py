"""`fapo validate`: check a tenant without calling any model. Every problem is one line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fapo.errors import FapoError
from fapo.settings import Settings
from fapo.tenant import Tenant, load_tenant


class _NoModel:
    """Stands in for a chat model at validation time: building is fine, calling is not."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __getattr__(self, name: str) -> Any:
        raise FapoError(
            f"chain.py uses the model ({self.spec}) while building the graph; "
            "call models only inside nodes"
        )


def null_factory(models: dict[str, str], problems: list[str] | None = None) -> Callable[..., Any]:
    """A model factory for building without calling: checks the role (and, outside validation,
    which reports specs once with their file and line, the spec)."""
    from fapo.models import parse_spec

    def factory(role: str = "task", **_: Any) -> Any:
        if role not in models:
            message = (
                f"chain.py asks for model role '{role}' but tenant.yaml 'models' "
                f"has only {', '.join(models)}; add it there"
            )
            if problems is None:
                raise FapoError(message)
            problems.append(message)
            return _NoModel(role)
        if problems is None:
            parse_spec(models[role])
        return _NoModel(models[role])

    return factory


def _try(problems: list[str], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except FapoError as exc:
        problems.append(str(exc))
        return None


def _model_problems(tenant: Tenant) -> list[str]:
    from fapo.models import parse_spec
    from fapo.tenant import _yaml_line

    path = tenant.root / "tenant.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    out = []
    for role, spec in tenant.spec.models.items():
        try:
            parse_spec(spec)
        except FapoError as exc:
            line = _yaml_line(text, ("models", role))
            out.append(f"{path}{f':{line}' if line else ''}: models.{role}: {exc}")
    return out


def validate(name_or_path: str, settings: Settings) -> tuple[Tenant | None, list[str], list[str]]:
    """(tenant, problems, warnings): every problem found, each reported once, in file order.
    The tenant is None when tenant.yaml itself is unusable."""
    problems: list[str] = []
    warnings: list[str] = []
    tenant = _try(problems, lambda: load_tenant(name_or_path, settings))
    if tenant is None:
        return None, problems, warnings
    problems += _model_problems(tenant)
    if tenant.spec.escalation.high_confidence is not None:
        warnings.append(
            f"{tenant.root / 'tenant.yaml'}: escalation.high_confidence has no effect (escalation "
            "weighs every cluster of a level instead of jumping on one); remove it "
            "(escalation.min_confidence sets which clusters count as attributed)"
        )
    _try(problems, lambda: tenant.params)
    problems += tenant.data_problems()
    _try(problems, lambda: tenant.scorer)
    checks = _try(problems, lambda: tenant.checks) or []
    # Built with the parameters as written (a bad one is reported above, not again by the
    # build) and collecting prompt problems, so one problem does not hide the next.
    built = _try(
        problems,
        lambda: tenant.build(
            null_factory(dict(tenant.spec.models), problems),
            params=tenant.raw_params(),
            problems=problems,
        ),
    )
    if built is not None:
        graph, ctx = built
        nodes = set(graph.nodes)
        for name in tenant.spec.steps:
            if name not in nodes:
                problems.append(
                    f"{tenant.root / 'tenant.yaml'}: steps.{name}: no such step in "
                    f"the graph (steps: {', '.join(sorted(nodes))})"
                )
        for chk in checks:
            if chk.step not in nodes:
                problems.append(
                    f"{tenant.root / (tenant.spec.checks or '')}: check "
                    f"'{chk.name}' names step '{chk.step}' which the graph lacks"
                )
        for name in tenant.prompts:
            if name not in ctx.declared:
                warnings.append(
                    f"prompts/{name}.md is not used by chain.py (no ctx.prompt('{name}'))"
                )
    return tenant, list(dict.fromkeys(problems)), list(dict.fromkeys(warnings))

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


def null_factory(models: dict[str, str]) -> Callable[..., Any]:
    from fapo.models import parse_spec

    def factory(role: str = "task", **_: Any) -> Any:
        if role not in models:
            raise FapoError(
                f"chain.py asks for model role '{role}' but tenant.yaml 'models' "
                f"has only {', '.join(models)}; add it there"
            )
        parse_spec(models[role])
        return _NoModel(models[role])

    return factory


def _try(problems: list[str], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except FapoError as exc:
        problems.append(str(exc))
        return None


def validate(name_or_path: str, settings: Settings) -> tuple[Tenant | None, list[str], list[str]]:
    """(tenant, problems, warnings). The tenant is None when tenant.yaml itself is unusable."""
    problems: list[str] = []
    warnings: list[str] = []
    tenant = _try(problems, lambda: load_tenant(name_or_path, settings))
    if tenant is None:
        return None, problems, warnings
    for role, spec in tenant.spec.models.items():
        from fapo.models import parse_spec

        _try(problems, lambda spec=spec, role=role: parse_spec(spec))
    _try(problems, lambda: tenant.params)
    ids: dict[str, str] = {}
    for split in ("train", "val", "test"):
        rows = _try(problems, lambda split=split: list(tenant.examples(split))) or []
        for ex in rows:
            if ex.id in ids:
                problems.append(
                    f"{tenant.data_path(split)}: id '{ex.id}' is also in the "
                    f"{ids[ex.id]} split; a row may appear in one split only"
                )
                break
            ids[ex.id] = split
    _try(problems, lambda: tenant.scorer)
    checks = _try(problems, lambda: tenant.checks) or []
    built = _try(problems, lambda: tenant.build(null_factory(dict(tenant.spec.models))))
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
    return tenant, problems, warnings

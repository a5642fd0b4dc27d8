"""`--model ROLE=SPEC`: run a tenant's roles on other models without editing tenant.yaml."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from fapo.errors import FapoError

if TYPE_CHECKING:
    from fapo.spec import TenantSpec


def parse_overrides(items: Iterable[str] | None) -> dict[str, str]:
    """`["task=local:smollm2", …]` → `{"task": "local:smollm2"}`; each SPEC is parsed here, so a
    typo is one line before anything runs."""
    from fapo.models import parse_spec

    out: dict[str, str] = {}
    for item in items or ():
        role, sep, spec = item.partition("=")
        role, spec = role.strip(), spec.strip()
        if not sep or not role or not spec:
            raise FapoError(f"--model '{item}': use ROLE=SPEC, e.g. --model task=local:smollm2")
        if role in out:
            raise FapoError(f"--model names role '{role}' twice; give each role once")
        parse_spec(spec)
        out[role] = spec
    return out


def apply_overrides(spec: TenantSpec, overrides: Mapping[str, str] | None) -> TenantSpec:
    """The tenant spec with `models` roles replaced; a role tenant.yaml lacks is an error (the
    chain would never ask for it, so the override would silently do nothing)."""
    if not overrides:
        return spec
    unknown = sorted(set(overrides) - set(spec.models))
    if unknown:
        raise FapoError(
            f"--model {unknown[0]}=…: tenant '{spec.name}' has no model role '{unknown[0]}' "
            f"(its roles: {', '.join(spec.models)})"
        )
    return spec.model_copy(update={"models": {**spec.models, **overrides}})

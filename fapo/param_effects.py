"""What a params.yaml key feeds, measured: the chat-model settings `build(ctx)` sets with it moved.

The chain is built (never called: a null model factory records each chat model's settings) with
the key at another value within its bounds; whichever model setting changes is what the key
feeds. Generic code asks this instead of reading a key's name: a tenant may call its sampling
temperature `creativity`, and a key named `temperature_unit` may feed a retrieval filter.

- `model_settings`: the settings of every chat model one build creates (the joint binding,
  fapo/joint.py, moves a key and compares);
- `sampling_keys`: the declared range keys whose move only changes models' `temperature` (the
  LangChain setting name, not tenant wording), upwards with the key — attribution's interventions
  move these only down (fapo/interventions.py), the built-in agent does not race raising them
  where nothing samples (fapo/agents/builtin.py).

Nothing here builds candidate chain code (`is_candidate_code`: it is built only in the sandboxed
worker), so such a tenant feeds nothing measurable here; each caller says what it does then.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fapo.candidate import is_candidate_code
from fapo.errors import FapoError
from fapo.tenant import Tenant

#: Chat-model settings that set sampling randomness (LangChain's standard parameter name).
SAMPLING = frozenset({"temperature"})
#: Tenant variants whose sampling keys are remembered (each costs two builds per range key).
CACHE_SIZE = 256

_sampling_cache: dict[tuple[str, str, str], frozenset[str]] = {}


def model_settings(tenant: Tenant, params: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """Settings of every chat model `build(ctx)` creates, in creation order (None: no build)."""
    from fapo.validate import null_factory

    if is_candidate_code(tenant):  # sealing: candidate chain code is built in the worker only
        return None
    made: list[dict[str, Any]] = []
    factory = null_factory(dict(tenant.spec.models))

    def recording(role: str = "task", **settings: Any) -> Any:
        made.append({"role": role, **settings})
        return factory(role, **settings)

    try:
        tenant.build(recording, params=params)
    except FapoError:
        return None
    return made


def probe_values(tenant: Tenant, name: str) -> list[Any]:
    """Values of `name` within its bounds other than the current one (for the binding)."""
    spec = tenant.spec.params[name]
    if spec.type == "bool":
        return [not tenant.params.get(name)]
    if spec.type == "choice":
        return [c for c in spec.choices or [] if c != tenant.params.get(name)]
    return [v for v in (spec.min, spec.max) if v is not None and v != tenant.params.get(name)]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _raises_sampling_only(
    low: list[dict[str, Any]] | None, high: list[dict[str, Any]] | None
) -> bool:
    """Do the two builds differ only in models' temperatures, each one higher in `high`?"""
    if low is None or high is None or len(low) != len(high):
        return False
    moved = False
    for a, b in zip(low, high, strict=True):
        diff = {k for k in {*a, *b} if a.get(k) != b.get(k)}
        if diff - SAMPLING:
            return False  # the key also changes another setting (or a model's role)
        for k in diff:
            if not (_number(a.get(k)) and _number(b.get(k)) and a[k] < b[k]):
                return False  # lowered, or set only at one end: not "higher key, more random"
            moved = True
    return moved


def sampling_keys(tenant: Tenant) -> frozenset[str]:
    """Declared int/float keys that act as a sampling temperature: building the chain with the
    key at its minimum and at its maximum (the other keys at their current values) changes no
    model setting but `temperature`, and raises every temperature it changes.

    Measured at build time only. A key the chain reads while it runs (inside a node function)
    changes no setting of a built model, so it is not found here: it counts as ordinary, which
    is the safe side (its moves are all tried and raced). Neither can a build-time probe see that
    a key which sets a temperature also feeds something no model setting shows (a value a node
    reads at run time); such a key is counted as sampling. A key that lowers the temperature as
    it rises is left out (ordinary). Bool and choice keys are never sampling keys here.

    Empty when the chain is not built here (candidate code, a build or params.yaml error);
    remembered per tenant variant (its folder, declared parameters and fingerprint)."""
    declared = json.dumps(
        {k: v.model_dump() for k, v in tenant.spec.params.items()}, sort_keys=True, default=str
    )
    key = (str(tenant.root), declared, tenant.fingerprint())
    if key in _sampling_cache:
        return _sampling_cache[key]
    out: set[str] = set()
    try:
        current = dict(tenant.params)
    except FapoError:
        current = None
    if current is not None and not is_candidate_code(tenant):
        for name, ps in tenant.spec.params.items():
            if ps.type not in ("int", "float") or ps.min is None or ps.max is None:
                continue
            lo, hi = (int(v) if ps.type == "int" else v for v in (ps.min, ps.max))
            if lo == hi:
                continue
            low = model_settings(tenant, {**current, name: lo})
            high = model_settings(tenant, {**current, name: hi})
            if _raises_sampling_only(low, high):
                out.add(name)
    if len(_sampling_cache) >= CACHE_SIZE:
        _sampling_cache.pop(next(iter(_sampling_cache)))
    _sampling_cache[key] = result = frozenset(out)
    return result

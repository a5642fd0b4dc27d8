"""Step checks and oracles for attribution; they read the label (gold evidence sentences).

Levels are the tenant author's best guess from what a check can see, not the planted truth.
"""

from __future__ import annotations

from typing import Any

from fapo import check

try:
    from fapo.checks import oracle
except ImportError:  # fapo.checks.oracle lands with the interventions work; until then, inert

    def oracle(step: str):  # type: ignore[no-redef]
        def deco(fn: Any) -> Any:
            fn.__fapo_oracle_step__ = step
            return fn

        return deco


@check("evidence", cause="a sentence the answer needs is missing from the evidence", level="prompt")
def evidence_complete(example: Any, state: dict) -> bool:
    got = " ".join(str(e) for e in state.get("evidence") or [])
    return all(s.split("] ", 1)[-1] in got for s in example.label["evidence"])


@oracle("evidence")
def gold_evidence(example: Any, state: dict) -> dict | None:
    return {"evidence": list(example.label["evidence"])}

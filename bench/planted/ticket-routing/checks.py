"""Step checks and oracles for attribution; they read the label (department, issue, key sentence).

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


@check("clip", cause="the sentence stating the problem was clipped away", level="parameter")
def problem_kept(example: Any, state: dict) -> bool:
    return example.label["problem"] in state.get("text", "")


@check("department", cause="routed to the wrong department", level="prompt", confidence=0.7)
def right_department(example: Any, state: dict) -> bool:
    return state.get("department", "").strip().lower() == example.label["department"]


@oracle("clip")
def whole_ticket(example: Any, state: dict) -> dict | None:
    return {"text": example.inputs["ticket"]}


@oracle("department")
def gold_department(example: Any, state: dict) -> dict | None:
    return {"department": example.label["department"]}

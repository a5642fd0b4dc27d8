"""Step checks and oracles for attribution; they read the label (route, the deciding sentence,
the FAQ entry).

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


@check("clip", cause="the sentence naming the problem was clipped away", level="parameter")
def detail_kept(example: Any, state: dict) -> bool:
    return example.label["detail"] in state.get("text", "")


@check("triage", cause="sent down the wrong branch", level="prompt", confidence=0.7)
def right_route(example: Any, state: dict) -> bool:
    return state.get("route", "").strip().lower() == example.label["route"]


@check("lookup", cause="the FAQ entry that answers was not found", level="structure")
def entry_found(example: Any, state: dict) -> bool:
    return not example.label["entry"] or example.label["entry"] in (state.get("entries") or [])


@oracle("clip")
def whole_message(example: Any, state: dict) -> dict | None:
    return {"text": example.inputs["message"]}


@oracle("triage")
def gold_route(example: Any, state: dict) -> dict | None:
    return {"route": example.label["route"]}


@oracle("lookup")
def gold_entry(example: Any, state: dict) -> dict | None:
    return {"entries": [example.label["entry"]]} if example.label["entry"] else None

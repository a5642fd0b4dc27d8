"""Step check for attribution: did retrieval bring a labelled ticket of the gold team?"""

from __future__ import annotations

from typing import Any

from fapo import check


@check(
    "retrieve",
    cause="no retrieved labelled ticket carries the gold team: retrieval depth k too low",
    level="parameter",
    confidence=0.8,
)
def gold_team_retrieved(example: Any, state: dict) -> bool:
    return any(e.endswith(f"Team: {example.label['answer']}") for e in state.get("examples") or [])

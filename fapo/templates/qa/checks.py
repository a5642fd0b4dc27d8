"""Step checks: they may read the gold label and tell attribution which step failed."""

from __future__ import annotations

from typing import Any

from fapo import check


@check(
    "retrieve",
    cause="gold passage not retrieved: it ranks below the retrieval depth k",
    level="parameter",
    confidence=0.9,
)
def gold_passage_retrieved(example: Any, state: dict) -> bool:
    wanted = f"[{example.label['passage']}]"
    return any(p.startswith(wanted) for p in state.get("passages") or [])

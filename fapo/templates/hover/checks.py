"""Which hop left a supporting document unretrieved (judged after the last hop)."""

from __future__ import annotations

from typing import Any

from fapo import check


def _got(state: dict[str, Any]) -> set[str]:
    return {
        p[1 : p.index("]")] for p in state.get("passages") or [] if p.startswith("[") and "]" in p
    }


@check(
    "retrieve_3",
    cause="a supporting document was not retrieved by any hop",
    level="parameter",
    confidence=0.6,
)
def supporting_documents_retrieved(example: Any, state: dict[str, Any]) -> bool:
    return set(example.label["titles"]) <= _got(state)

"""Which hop missed a supporting document, and whether the answer step had what it needed."""

from __future__ import annotations

import re
from typing import Any

from fapo import check


def _norm(text: Any) -> str:
    text = re.sub(r"[^a-z0-9 ]", " ", str(text or "").lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def _titles(passages: Any) -> set[str]:
    return {p[1 : p.index("]")] for p in passages or [] if p.startswith("[") and "]" in p}


def _missing(example: Any, state: dict[str, Any]) -> list[str]:
    got = _titles(state.get("passages")) | _titles(state.get("hop_passages"))
    return [t for t in example.label["titles"] if t not in got]


@check(
    "retrieve_hop",
    cause="a supporting document was retrieved by neither hop",
    level="parameter",
    confidence=0.6,
)
def supporting_documents_retrieved(example: Any, state: dict[str, Any]) -> bool:
    return not _missing(example, state)


@check(
    "answer",
    cause="the answer is wrong although every supporting document was retrieved",
    level="prompt",
    confidence=0.6,
)
def answered_from_evidence(example: Any, state: dict[str, Any]) -> bool:
    right = _norm(state.get("answer")) == _norm(example.label["answer"])
    return bool(_missing(example, state)) or right

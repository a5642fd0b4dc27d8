"""Step checks for attribution: they read the gold label's supporting passages.

- retrieve / first_hop_retrieved: the passage the question itself points to was not among the
  top k -> retrieval depth (parameter).
- answer / bridge_passage_seen: a two-hop question's second passage never reached the answer step.
  It shares no name with the question (the generator asserts BM25 ranks it below the largest k),
  so no k and no question-built query finds it -> an entity-driven second hop (structure).
- answer / followed_bridge: both passages were there but the answer came from the first one (the
  bridge entity itself, or e.g. its founding year) -> ask for step-by-step reasoning (prompt).
"""

from __future__ import annotations

import re
from typing import Any

from fapo import check


def _ids(passages: Any) -> set[str]:
    return {m.group(1) for p in passages or [] if (m := re.match(r"\s*\[([^\]]+)\]", str(p)))}


def _norm(text: Any) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", str(text or "").lower()).split())


@check(
    "retrieve",
    cause="gold passage not retrieved: it ranks below the retrieval depth k",
    level="parameter",
    confidence=0.9,
)
def first_hop_retrieved(example: Any, state: dict) -> bool:
    return example.label["supporting"][0] in _ids(state.get("passages"))


@check(
    "answer",
    cause="bridge passage never retrieved: it shares no name with the question, so "
    "only an entity-driven second retrieval hop can find it",
    level="structure",
    confidence=0.9,
)
def bridge_passage_seen(example: Any, state: dict) -> bool:
    supporting = example.label["supporting"]
    return len(supporting) < 2 or supporting[1] in _ids(state.get("passages"))


@check(
    "answer",
    cause="answered from the first passage (the bridge entity or another of its facts) instead "
    "of following the bridge entity to the second passage; ask for step-by-step reasoning",
    level="prompt",
    confidence=0.8,
)
def followed_bridge(example: Any, state: dict) -> bool:
    bridge, gold = example.label.get("bridge"), _norm(example.label["answer"])
    answer = _norm(state.get("answer"))
    if not bridge or not answer or gold in answer:
        return True
    first_id = example.label["supporting"][0]
    first = next((p for p in state.get("passages") or [] if first_id in _ids([p])), "")
    return _norm(bridge) not in answer and f" {answer} " not in f" {_norm(first)} "

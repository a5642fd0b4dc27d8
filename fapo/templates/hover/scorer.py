"""1 when every supporting document of the claim is among the retrieved ones (retrieval recall
at the end of the hops, all-or-nothing); details carry the recall and whether the verdict
(SUPPORTED / NOT_SUPPORTED) matches the gold label."""

from __future__ import annotations

from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    outcome = prediction if isinstance(prediction, dict) else {}
    got = set(outcome.get("titles") or [])
    gold = list(example.label["titles"])
    found = [t for t in gold if t in got]
    return Score(
        1.0 if gold and len(found) == len(gold) else 0.0,
        {
            "recall": round(len(found) / len(gold), 4) if gold else 0.0,
            "verdict_correct": outcome.get("verdict") == example.label["verdict"],
            "retrieved": len(got),
        },
    )

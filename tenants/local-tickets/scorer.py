"""Exact match of the routed team (case, surrounding spaces and punctuation ignored)."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    gold = example.label["answer"]
    pred = re.sub(r"[^a-z ]", " ", str(prediction or "").lower()).split()
    exact = pred == [gold]
    return Score(
        1.0 if exact else 0.0,
        {"exact_match": exact, "gold_in_prediction": gold in pred, "prediction_words": len(pred)},
    )

"""Exact match after normalization (case, punctuation, articles, spacing) against the gold answer."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def normalize(text: str) -> str:
    text = re.sub(r"[^a-z0-9 ]", " ", str(text).lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def score(example: Example, prediction: Any) -> Score:
    gold = normalize(example.label["answer"])
    pred = normalize(prediction or "")
    exact = pred == gold
    return Score(
        1.0 if exact else 0.0,
        {
            "exact_match": exact,
            "gold_in_prediction": bool(gold) and f" {gold} " in f" {pred} ",
            "prediction_words": len(pred.split()),
        },
    )

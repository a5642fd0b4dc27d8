"""Exact match after normalization (case, punctuation, articles, spacing)."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def normalize(text: Any) -> str:
    text = re.sub(r"[^a-z0-9 ]", " ", str(text or "").lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def score(example: Example, prediction: Any) -> Score:
    gold, pred = normalize(example.label["answer"]), normalize(prediction)
    return Score(1.0 if pred == gold else 0.0, {"gold_in_prediction": f" {gold} " in f" {pred} "})

"""Exact match after normalization (case, punctuation, articles, spacing) against the gold answer."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def normalize(text: Any) -> str:
    text = re.sub(r"[^a-z0-9 ]", " ", str(text or "").lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def score(example: Example, prediction: Any) -> Score:
    ok = normalize(prediction) == normalize(example.label["answer"])
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

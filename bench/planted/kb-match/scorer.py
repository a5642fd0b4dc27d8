"""Exact match of the article id."""

from __future__ import annotations

from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    ok = str(prediction or "").strip() == example.label["article"]
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

"""Exact match of the section label."""

from __future__ import annotations

from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    ok = str(prediction or "").strip().lower().rstrip(".") == example.label["section"]
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

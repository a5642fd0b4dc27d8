"""1 when the predicted label equals the gold label (case and surrounding spaces ignored)."""

from __future__ import annotations

from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    gold = str(example.label["label"]).strip().lower()
    pred = str(prediction or "").strip().lower().rstrip(".")
    return Score(1.0 if pred == gold else 0.0, {"gold": gold, "predicted": pred[:80]})

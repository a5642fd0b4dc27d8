"""Exact match of the verdict label (case and surrounding punctuation ignored)."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    pred = re.sub(r"[^A-Z ]", "", str(prediction or "").upper()).strip()
    ok = pred == example.label["verdict"]
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

"""Exact match of the number of years between the two foundings."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    pred = re.sub(r"[^0-9a-z]", "", str(prediction or "").lower())
    ok = pred == str(example.label["gap"])
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

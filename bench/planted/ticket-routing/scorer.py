"""Exact match of the issue-type label (case and surrounding punctuation ignored)."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def score(example: Example, prediction: Any) -> Score:
    pred = re.sub(r"[^a-z_ ]", "", str(prediction or "").lower()).strip()
    ok = pred == example.label["issue"]
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

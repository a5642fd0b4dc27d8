"""Exact match of the branch's outcome: the FAQ answer or the faulty part (case and surrounding
punctuation ignored)."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def _norm(text: Any) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", str(text or "").lower()).split())


def score(example: Example, prediction: Any) -> Score:
    ok = _norm(prediction) == _norm(example.label["outcome"])
    return Score(1.0 if ok else 0.0, {"exact_match": ok})

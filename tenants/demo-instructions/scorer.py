"""Programmatic verifiers, one per constraint kind; the score is 1 only if every constraint holds
(strict, as in instruction-following benchmarks). Details name each constraint's verdict."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score

WORD = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")
BULLET = re.compile(r"^\s*[-*]\s+\S")


def count_words(text: str) -> int:
    return len(WORD.findall(text))


def verify(c: dict[str, Any], text: str) -> bool:
    """Whether `text` satisfies one constraint spec (see generate.py for the kinds)."""
    kind = c["kind"]
    if kind == "include":
        return re.search(rf"\b{re.escape(c['word'])}\b", text, re.IGNORECASE) is not None
    if kind == "exclude":
        return re.search(rf"\b{re.escape(c['word'])}\b", text, re.IGNORECASE) is None
    if kind == "start":
        first = WORD.search(text)
        return bool(first) and first.group(0).lower() == c["word"].lower()
    if kind == "end":
        return text.rstrip().lower().endswith(c["phrase"].lower())
    if kind == "lowercase":
        return text == text.lower()
    if kind == "title":
        return re.search(r"<<[^\n<>]+>>", text) is not None
    if kind == "no_commas":
        return "," not in text
    if kind == "min_words":
        return count_words(text) >= int(c["n"])
    if kind == "exact_words":
        return count_words(text) == int(c["n"])
    if kind == "exact_bullets":
        return sum(1 for line in text.splitlines() if BULLET.match(line)) == int(c["n"])
    raise ValueError(f"unknown constraint kind {kind!r}")


def score(example: Example, prediction: Any) -> Score:
    text = prediction if isinstance(prediction, str) else ""
    verdicts = {
        f"{i}:{c['kind']}": verify(c, text) for i, c in enumerate(example.label["constraints"])
    }
    ok = bool(text) and all(verdicts.values())
    return Score(1.0 if ok else 0.0, {"constraints": verdicts, "words": count_words(text)})

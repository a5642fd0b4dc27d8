"""Share of the example's constraints the text satisfies (each check is plain string logic)."""

from __future__ import annotations

import re
from typing import Any

from fapo import Example, Score


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*", text)


def satisfied(kind: str, arg: str, text: str) -> bool:
    low = text.lower()
    if kind == "include":
        return re.search(rf"\b{re.escape(arg.lower())}\b", low) is not None
    if kind == "exclude":
        return re.search(rf"\b{re.escape(arg.lower())}\b", low) is None
    if kind == "no_commas":
        return "," not in text
    if kind == "lowercase":
        return text == low
    if kind == "max_words":
        return len(_words(text)) <= int(arg)
    if kind == "start":
        words = _words(text)
        return bool(words) and words[0].lower() == arg.lower()
    if kind == "end":
        return low.rstrip(" .!?\n").endswith(arg.lower())
    raise ValueError(f"unknown constraint kind {kind!r}")


def score(example: Example, prediction: Any) -> Score:
    text = str(prediction or "")
    checks = example.label["checks"]
    results = {f"{c['kind']}:{c['arg']}": satisfied(c["kind"], c["arg"], text) for c in checks}
    value = sum(results.values()) / len(results) if results else 0.0
    return Score(value, {"satisfied": results})

"""HotpotQA answer exact match (the score) and F1 (details), with the official normalization:
lower case, punctuation and the articles a/an/the removed, whitespace collapsed."""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from fapo import Example, Score


def normalize(text: Any) -> str:
    text = str(text or "").lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def score(example: Example, prediction: Any) -> Score:
    gold = example.label["answer"]
    em = normalize(prediction) == normalize(gold)
    return Score(1.0 if em else 0.0, {"f1": round(f1(str(prediction or ""), gold), 4)})

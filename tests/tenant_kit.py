"""Pieces the generated test tenants share: invented names, an exact-match scorer, split files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SYL = ("ka", "lo", "mi", "ren", "tor", "vi", "sa", "du", "pel", "gar", "on", "bri", "zel", "ham")

#: scorer.py of a tenant whose prediction must equal the label (case and outer spaces aside).
EXACT_SCORER = """
def score(example, prediction):
    return float(str(prediction or "").strip().lower() == str(example.label).lower())
"""


def invented(rng: random.Random, parts: int) -> str:
    """A capitalised made-up word of `parts` syllables (no model knows anything about it)."""
    return "".join(rng.choice(SYL) for _ in range(parts)).capitalize()


def write_splits(tenant: Path, rows: list[dict[str, Any]], sizes: dict[str, int]) -> None:
    """`rows` cut in order into `data/<split>.jsonl` of the given sizes."""
    (tenant / "data").mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in sizes.items():
        part = rows[start : start + size]
        start += size
        (tenant / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in part), encoding="utf-8"
        )

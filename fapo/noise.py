"""Noisy variants: how many evaluations per example a paired comparison of two variants needs.

A variant whose model calls sample (temperature > 0) gives one noisy draw per example and
evaluation. Scored once, a candidate that removes the noise (temperature → 0, a vote) shows its
gain only on the few examples the incumbent's single draw happened to flip, too few for the paired
test (4 flipped examples of 35: the smallest sign-flip p-value is 1/16 > 0.05), while the same
move scored on train with repeats wins clearly. Averaging each example over repeated draws is the
statistically right remedy: the per-example mean estimates its expected score, and the paired
test on those means keeps its guarantee (candidate and incumbent are exchangeable per example
under "no effect", whatever the number of repeats), because the number of repeats is chosen
from the recorded call settings only — never from the scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

#: Evaluations per example when a compared variant samples: the built-in agent scores its moves
#: with the same number on train (fapo/agents/builtin.py), so train and validation agree.
NOISY_REPEATS = 3


def samples(results: Path) -> bool:
    """Did any recorded model call in this results.jsonl run at temperature > 0?"""
    if not results.is_file():
        return False
    with results.open(encoding="utf-8") as fh:
        for line in fh:
            if '"temperature"' not in line:
                continue
            rec = json.loads(line)
            for step in rec.get("steps") or []:
                for call in step.get("calls") or []:
                    t = (call.get("settings") or {}).get("temperature")
                    if t is not None and float(t) > 0:
                        return True
    return False


def comparison_repeats(configured: int, results: Iterable[Path]) -> int | None:
    """Repeats the paired comparison needs beyond the configured ones, or None if the configured
    evaluation suffices (no variant samples, or the tenant already asks for enough repeats)."""
    if configured >= NOISY_REPEATS:
        return None
    return NOISY_REPEATS if any(samples(p) for p in results) else None

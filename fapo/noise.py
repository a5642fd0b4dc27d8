"""Noisy variants: how many evaluations per example a paired comparison of two variants needs.

A variant whose model calls sample (temperature > 0) gives one noisy draw per example and
evaluation. Scored once, a candidate that removes the noise (temperature → 0, a vote) shows its
gain only on the few examples the incumbent's single draw happened to flip, too few for the paired
test: with 4 flipped examples the smallest one-sided sign-flip p-value is 1/16 > 0.05, and
averaging more draws per example cannot change that (the number of susceptible examples caps it).
Measured on the planted suite: fact-lookup's vote over a noisy query step gained +0.039 on val
with 3 draws per example averaged, p = 0.12, never acceptable.

So a comparison of sampling variants evaluates both on `COMPARISON_REPEATS` draws per example
and takes the **draw** (example, repeat) as the unit of the paired test. That is valid: repeat r
of a variant is an independent draw (the model's sample index and the call cache key carry the
repeat), so given the examples the paired differences of different draws are independent, and
under "no effect" each is symmetric — the sign-flip test's assumptions, per draw. The number of
repeats follows from the recorded call settings only, never from the scores, so choosing it is no
second look at the data (tests/test_noise.py holds an A/A check at alpha).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fapo.evaluate import EvalSummary
    from fapo.loop import Run

#: Evaluations per example of each move on train when a step samples (fapo/agents/builtin.py):
#: every move and the incumbent on the same repeat indexes.
NOISY_REPEATS = 3
#: Draws per validation example when a compared variant samples. 5, not 3: a defect flipping 4 of
#: 34 examples at a 20% rate shows in about 4 of their 20 draws; fewer than 5 same-signed draw
#: differences can never reach p < 0.05 (2^-5 = 0.031).
COMPARISON_REPEATS = 5


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
    """Draws per example for comparing two variants whose configured val evaluations recorded
    `results`, or None when neither samples (compare the configured evaluations as they are)."""
    if not any(samples(p) for p in results):
        return None
    return max(configured, COMPARISON_REPEATS)


def on_draws(summary: EvalSummary, results: Path) -> EvalSummary:
    """`summary` with its scores keyed by draw (`id#repeat`) from its results.jsonl, so the paired
    test takes each draw as a unit (see the module doc). Mean and everything else unchanged."""
    scores: dict[str, float] = {}
    with results.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                scores[f"{rec['id']}#{rec.get('repeat', 0)}"] = float(rec["score"])
    return dataclasses.replace(summary, scores=dict(sorted(scores.items())))


def paired_val(run: Run, vid: str) -> tuple[EvalSummary, EvalSummary]:
    """Candidate and incumbent val summaries for an unstaged acceptance rule: as evaluated, or
    keyed by draw on `comparison_repeats` draws when either samples."""
    inc_id = run.st.incumbent
    cand, inc = run._eval(vid, "val"), run.summaries[(inc_id, "val")]
    found = [run.vdir(v) / "eval" / "val" / "results.jsonl" for v in (vid, inc_id)]
    if reps := comparison_repeats(run.tenant.spec.acceptance.repeats, found):
        path = lambda v: run.vdir(v) / "eval" / f"val-r{reps}" / "results.jsonl"  # noqa: E731
        cand, inc = (on_draws(run._eval(v, "val", reps), path(v)) for v in (vid, inc_id))
    return cand, inc

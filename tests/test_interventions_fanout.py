"""Interventions on a fan-out graph (planted year-gap: `year_first` and `year_second` run in one
superstep and join at `gap`). Three flaws fapo/interventions.py had there, each pinned here:

- the oracle forked with `update_state(as_node=step)` from the checkpoint whose next tasks are
  both siblings; LangGraph then treats the superstep as done, the sibling never runs and the join
  never fires, so the oracle repaired nothing (fapo/fork.py now replays the siblings' recorded
  updates in the same superstep, `abulk_update_state`);
- resampling a step re-ran its whole superstep at the new sample index, redrawing its siblings
  (fapo/fork.py now re-runs the step alone, the siblings' recorded writes kept);
- an upstream intervention (oracle, parameter) that changes a sampling step's input re-rolls that
  step's draw, and one lucky draw counted as a repair at the earlier step (fapo/reroll.py now
  measures such a repair across the re-rolled step's draws against that step's own resample rate).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fapo.evaluate import evaluate
from fapo.interventions import InterventionRunner, Kind

SUITE = Path(__file__).resolve().parents[1] / "bench" / "planted"
sys.path.insert(0, str(SUITE))

from ground_truth import load_defects, variant  # noqa: E402


def _probe_renamed() -> tuple[float, bool, bool]:
    """Only second-verbose left broken: (base score, oracle at year_second repaired, the same
    oracle value written by a full re-run repaired)."""
    t = variant(SUITE / "year-gap", ["k-depth", "first-noise", "second-noise"])
    ex = next(e for e in t.examples("train") if e.label["bucket"] == "renamed")
    v = InterventionRunner(t).probe_many([ex], {"year_first": 0.0, "year_second": 0.0})[ex.id]
    oracle = next(tr for tr in v.trials if tr.kind == Kind.ORACLE and tr.step == "year_second")
    fixed = variant(SUITE / "year-gap", [d.id for d in load_defects(SUITE / "year-gap")])
    passes = dict(evaluate(fixed, "train", use_cache=False).scores)[ex.id] >= 0.999
    return v.base_score, oracle.repaired, passes


def test_the_oracle_at_a_parallel_step_repairs_a_failure_it_causes() -> None:
    base, repaired, passes_when_fixed = _probe_renamed()
    assert base < 0.999 and passes_when_fixed  # the example fails only through year_second
    assert repaired


def _second_samples(tmp_path: Path) -> tuple[Any, list[Any]]:
    """year-gap with k and the second prompt fixed, both year steps sampling at 1.0 (the first's
    declared parameter, the second's hard-coded: its second-noise defect): the examples whose
    failure is a flip at `year_second` alone."""
    t = variant(SUITE / "year-gap", ["k-depth", "second-verbose"])
    evaluate(t, "train", out_dir=tmp_path, use_cache=False)
    examples = {e.id: e for e in t.examples("train")}
    picked = []
    for line in (tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        state = {k: v for s in rec["steps"] for k, v in (s.get("update") or {}).items()}
        label = rec["label"]
        if state.get("first_year") == label["first_year"] and state.get("second_year") is None:
            picked.append(examples[rec["id"]])
    return t, picked


def _probed(tmp_path: Path) -> list[Any]:
    t, picked = _second_samples(tmp_path)
    assert picked, "no example fails by a year_second flip alone"
    runner = InterventionRunner(t)
    return list(runner.probe_many(picked, {"year_first": 1.0, "year_second": 1.0}).values())


def test_resampling_one_parallel_step_does_not_redraw_its_sibling(tmp_path: Path) -> None:
    """`year_first`'s own draw is right in these failures, so resampling it alone cannot repair
    them; it does, because the resample re-runs the whole superstep at the new sample index and
    `year_second` is drawn again too (2-3 of 3 draws "repair", on 3 of 3 examples)."""
    for v in _probed(tmp_path):
        first = next(t for t in v.trials if t.kind == Kind.RESAMPLE and t.step == "year_first")
        assert not first.repaired, v.example_id


def test_an_upstream_intervention_that_only_redraws_a_noisy_step_is_not_the_cause(
    tmp_path: Path,
) -> None:
    """The oracle at `lookup` writes the gold passages; they change `year_second`'s prompt, so
    its draw (sample index 0) is rolled again and usually lands right: "oracle at lookup repaired"
    and, being the earliest step, lookup/structure is the verdict for a flip at year_second (3 of
    3). A parameter move that changes a noisy step's input does the same. Resampling year_second
    itself repairs 2-3 of 3 draws: the cause is there."""
    verdicts = _probed(tmp_path)
    steps = [v.step for v in verdicts]
    assert all(s == "year_second" for s in steps), steps
    for v in verdicts:  # the lookup oracle's repair was measured across year_second's draws
        lookup = next(t for t in v.trials if t.kind == Kind.ORACLE and t.step == "lookup")
        assert "year_second" in lookup.rerolled and lookup.tries > 1, v.example_id

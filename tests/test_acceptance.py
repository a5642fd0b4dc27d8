"""Acceptance statistics: a change that is only noise must be accepted at most at rate alpha."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from statistics import NormalDist
from types import SimpleNamespace

import pytest
from noisy_demo import fixed_files_at

from fapo.compare import PairedImprovement
from fapo.evaluate import evaluate
from fapo.records import DecisionRecord, Status
from fapo.sequential import (
    GroupSequential,
    look_order,
    run_level,
    spent,
    staged_decide,
)
from fapo.spec import AcceptanceSpec
from fapo.stats import paired_test
from fapo.tenant import load_tenant

_N = NormalDist()


def normal_bounds(
    fractions: Sequence[float], alpha: float, kind: str = "obrien-fleming", grid: int = 801
) -> list[float]:
    """The normal-theory reference for `spent` (test-side only): upper z-boundaries of a one-sided
    group-sequential test (Brownian motion at `fractions`), each look spending spent(t_k) − spent(t_{k−1}); numerical integration of the sub-density of
    the surviving paths (Armitage–McPherson–Rowe recursion) on a grid."""
    lo = -7.0  # survivors below -7 sd are negligible (< 1e-11)
    bounds: list[float] = []
    xs: list[float] = []  # grid of the previous look's statistic S = Z·sqrt(t), survivors only
    ws: list[float] = []  # sub-density × grid step
    prev_t = 0.0
    for k, t in enumerate(fractions):
        target = spent(t, alpha, kind) - spent(prev_t, alpha, kind)
        dt = t - prev_t
        sd = math.sqrt(dt)

        def tail(c: float, xs: list[float] = xs, ws: list[float] = ws, sd: float = sd, t: float = t, first: bool = k == 0) -> float:  # fmt: skip
            s = c * math.sqrt(t)
            if first:
                return 1 - _N.cdf(s / sd)
            return sum(w * (1 - _N.cdf((s - x) / sd)) for x, w in zip(xs, ws, strict=True))

        a, b = -1.0, 12.0
        for _ in range(60):  # bisection: the tail probability decreases in c
            m = (a + b) / 2
            a, b = (m, b) if tail(m) > target else (a, m)
        c = (a + b) / 2
        bounds.append(c)
        # survivors' sub-density at this look, on a grid below the boundary
        top = c * math.sqrt(t)
        step = (top - lo * math.sqrt(t)) / (grid - 1)
        new_x = [lo * math.sqrt(t) + i * step for i in range(grid)]
        if k == 0:
            new_w = [_N.pdf(x / sd) / sd * step for x in new_x]
        else:
            new_w = [
                sum(w * _N.pdf((y - x) / sd) / sd for x, w in zip(xs, ws, strict=True)) * step
                for y in new_x
            ]
        xs, ws, prev_t = new_x, new_w, t
    return bounds


def _ceiling(n: int, alpha: float) -> float:
    """alpha*n plus two binomial standard deviations: a bound a correct test stays under."""
    return alpha * n + 2 * math.sqrt(n * alpha * (1 - alpha))


def test_paired_tests_hold_alpha_under_the_null() -> None:
    rng = random.Random(7)
    n_trials, alpha = 200, 0.05
    for method in ("permutation", "bootstrap"):
        hits = 0
        for t in range(n_trials):
            a = [float(rng.random() < 0.6) for _ in range(40)]
            b = [float(rng.random() < 0.6) for _ in range(40)]
            hits += paired_test(a, b, method=method, resamples=300, seed=t).p_value < alpha
        assert hits <= _ceiling(n_trials, alpha), (method, hits)


def test_paired_test_detects_a_real_gain() -> None:
    rng = random.Random(3)
    base = [float(rng.random() < 0.4) for _ in range(40)]
    better = [1.0 if x == 1.0 or rng.random() < 0.5 else 0.0 for x in base]
    t = paired_test(better, base, resamples=2000)
    assert t.mean_diff >= 0.15 and t.p_value < 0.01 and t.losses == 0


def test_min_improvement_gates_even_a_significant_gain() -> None:
    inc = {str(i): 0.0 for i in range(40)}
    cand = {str(i): (1.0 if i < 6 else 0.0) for i in range(40)}  # +0.15, exact p = 1/64
    rule = PairedImprovement(AcceptanceSpec(min_improvement=0.2, alpha=0.05))
    d = rule.decide(cand, inc)
    assert not d.accepted and "below the required" in d.reason
    assert PairedImprovement(AcceptanceSpec(min_improvement=0.05)).decide(cand, inc).accepted
    four = {str(i): (1.0 if i < 4 else 0.0) for i in range(40)}  # exact p = 1/16: too weak
    assert not PairedImprovement(AcceptanceSpec(min_improvement=0.05)).decide(four, inc).accepted


def test_noise_only_change_on_a_noisy_sim_is_accepted_at_most_at_alpha(project) -> None:
    """A/A test: candidate and incumbent differ only by a sentence the simulator ignores, so at
    temperature > 0 they differ only by seeded noise. Over many seeds, acceptances <= alpha."""
    t = load_tenant("demo-qa", project)
    files = fixed_files_at(t, 0.8)
    assert "temperature: 0.8" in files["params.yaml"]
    spec = AcceptanceSpec(min_improvement=0.0, alpha=0.05, resamples=1000)
    trials, accepted, seq_accepted, means = 30, 0, 0, set()
    for i in range(trials):
        pair = []
        for side in ("a", "b"):
            prompt = files["prompts/answer.md"] + f"\n(Reference {i}{side}.)\n"
            v = t.variant({**files, "prompts/answer.md": prompt})
            pair.append(evaluate(v, "val", use_cache=False).scores)
        means.add(round(sum(pair[0].values()), 3))
        accepted += PairedImprovement(spec, seed=i).decide(pair[1], pair[0]).accepted
        seq_accepted += GroupSequential(spec, seed=i).decide(pair[1], pair[0]).accepted
    assert len(means) > 3, "the simulator at temperature 0.8 should be noisy"
    assert accepted <= _ceiling(trials, spec.alpha), accepted
    assert seq_accepted <= _ceiling(trials, spec.alpha), seq_accepted


# -- sequential acceptance (fapo/sequential.py) ---------------------------------------------------


def test_obrien_fleming_boundaries_match_published_values() -> None:
    """Lan–DeMets O'Brien–Fleming spending, one-sided alpha 0.025 (e.g. Jennison & Turnbull,
    gsDesign/rpact): 3 equal looks 3.710, 2.511, 1.993; 2 looks 2.963, 1.969; 1 look 1.960."""
    assert normal_bounds([1 / 3, 2 / 3, 1], 0.025) == pytest.approx([3.710, 2.511, 1.993], abs=0.003)  # fmt: skip
    assert normal_bounds([0.5, 1], 0.025) == pytest.approx([2.963, 1.969], abs=0.003)
    assert normal_bounds([1], 0.025) == pytest.approx([1.960], abs=0.001)
    # spending functions at known points: OBF spends almost nothing early, Pocock linearly-ish
    assert spent(0.5, 0.025) == pytest.approx(0.00153, abs=2e-5)
    assert spent(1.0, 0.025) == 0.025 and spent(0.0, 0.025) == 0.0
    assert spent(0.5, 0.05, "pocock") == pytest.approx(0.05 * math.log((1 + math.e) / 2))


def _table(n: int, wins: set[int], losses: set[int] = frozenset()) -> tuple[dict, dict]:
    """Paired scores over n ids in look order: candidate wins/loses on the given positions."""
    order = look_order([f"x{i:02d}" for i in range(n)], seed=0)
    inc = {i: 0.5 for i in order}
    cand = {i: 1.0 if k in wins else 0.0 if k in losses else 0.5 for k, i in enumerate(order)}
    return cand, inc


def test_overwhelming_gain_stops_early_for_efficacy() -> None:
    cand, inc = _table(40, wins=set(range(40)))  # every example better
    d = GroupSequential(AcceptanceSpec(min_improvement=0.02, resamples=4000)).decide(cand, inc)
    assert d.accepted and d.stats["outcome"] == "efficacy"
    assert d.stats["n"] < 40, d.stats["looks"]  # decided before the last look


def test_losing_first_look_stops_for_futility() -> None:
    cand, inc = _table(40, wins=set(range(14, 40)), losses={0, 1, 2})  # looks are 13/27/40
    d = GroupSequential(AcceptanceSpec(resamples=1000)).decide(cand, inc)
    assert not d.accepted and d.stats["outcome"] == "futility" and d.stats["n"] == 13
    # an even first look also stops (no evidence of a gain yet); one ahead goes on
    even, _ = _table(40, wins=set(range(14, 40)))
    assert GroupSequential(AcceptanceSpec(resamples=1000)).decide(even, inc).stats["n"] == 13
    ahead, _ = _table(40, wins={0} | set(range(14, 40)))
    assert GroupSequential(AcceptanceSpec(resamples=1000)).decide(ahead, inc).stats["n"] > 13


def test_modest_gain_is_decided_at_the_last_look_at_the_run_level_alpha() -> None:
    cand, inc = _table(40, wins={0, 5, 14, 20, 28, 33, 38})  # 7 wins, exact one-look p = 1/128
    rule = GroupSequential(AcceptanceSpec(min_improvement=0.02, resamples=4000))
    d = rule.decide(cand, inc)
    assert d.accepted and d.stats["n"] == 40 and d.stats["outcome"] == "efficacy"
    small = rule.at_level(0.05 / 12).decide(cand, inc)  # 0.0042 < 1/128: not enough
    assert not small.accepted and small.stats["outcome"] == "final", small.reason


def test_staged_decide_evaluates_only_the_looks_it_needs() -> None:
    cand, inc = _table(40, wins=set(), losses={0, 1, 2, 3})
    asked: list[list[str]] = []

    def look(k: int, ids: list[str]) -> dict[str, float]:
        asked.append(ids)
        return {i: cand[i] for i in ids}

    summary = SimpleNamespace(scores=inc, mean=0.5)
    rule = GroupSequential(AcceptanceSpec(resamples=500))
    d = staged_decide(rule, "v001", "v000", summary, look, [], 0.05, 12)
    assert d.status is Status.REJECTED and len(asked) == 1 and len(asked[0]) == 13
    assert d.stats["run_level"]["level"] == pytest.approx(0.05 / 12)
    # a strong candidate: every look evaluated once, new examples only, decided accepted
    asked.clear()
    cand, _ = _table(40, wins=set(range(40)))
    d = staged_decide(rule, "v002", "v000", summary, look, [], None, 12)
    assert d.accepted and sum(map(len, asked)) == d.stats["n"] and len(set().union(*asked)) == d.stats["n"]  # fmt: skip


def test_a_lazy_incumbent_is_scored_on_the_looks_walked_and_decides_as_an_eager_one() -> None:
    """With `incumbent_look` the incumbent's scores come look by look: a candidate stopped at look
    1 asks for look 1's examples only, and every decision equals the one on complete scores."""
    rule = GroupSequential(AcceptanceSpec(resamples=500))
    for wins, losses in [(set(), {0, 1, 2, 3}), (set(range(40)), set()), ({1, 5, 9}, {2})]:
        cand, inc = _table(40, wins=wins, losses=losses)
        asked: list[list[str]] = []

        def inc_look(k: int, ids: list[str], inc=inc, asked=asked) -> dict[str, float]:
            asked.append(ids)
            return {i: inc[i] for i in ids}

        lazy = SimpleNamespace(scores={}, mean=0.5)
        look = lambda k, ids, cand=cand: {i: cand[i] for i in ids}  # noqa: E731
        got = staged_decide(rule, "v", "i", lazy, look, [], None, 12, inc_look, sorted(inc))
        eager = staged_decide(rule, "v", "i", SimpleNamespace(scores=inc, mean=0.5), look, [], None, 12)  # fmt: skip
        assert (got.status, got.reason) == (eager.status, eager.reason)
        assert sum(map(len, asked)) == got.stats["n"]  # no incumbent example beyond the looks
        assert len(set().union(*asked)) == got.stats["n"]
    assert len(asked) == 3 and got.stats["n"] == 40  # the last table went to the final look


def _decision(accepted: bool, level: float, horizon: int = 12) -> DecisionRecord:
    return DecisionRecord(
        variant="v",
        status=Status.ACCEPTED if accepted else Status.REJECTED,
        reason="",
        stats={"run_level": {"level": level, "horizon": horizon}},
    )


def test_run_level_fallback_carries_the_level_of_an_accepted_comparison_only() -> None:
    a = 0.05 / 12
    assert run_level([], 0.05, 12).level == pytest.approx(a)
    after_accept = run_level([_decision(True, a)], 0.05, 12)
    assert after_accept.level == pytest.approx(2 * a) and after_accept.index == 2
    chain = run_level([_decision(True, a), _decision(True, 2 * a)], 0.05, 12)
    assert chain.level == pytest.approx(3 * a)
    broken = run_level([_decision(True, a), _decision(False, 2 * a)], 0.05, 12)
    assert broken.level == pytest.approx(a)
    # the horizon of the first comparison stays (a resume with a larger budget cannot reset it)
    assert run_level([_decision(False, a)], 0.05, 100).level == pytest.approx(a)
    assert run_level([_decision(False, a)] * 12, 0.05, 100).level == 0.0  # all spent


def _null_scores(rng: random.Random, ids: list[str]) -> dict[str, float]:
    return {i: float(rng.random() < 0.5) for i in ids}


def test_sequential_null_false_accepts_stay_within_alpha() -> None:
    """200 A/A decisions on seeded noisy 0/1 scores (both sides the same coin): <= alpha."""
    rng, ids = random.Random(11), [f"e{i:02d}" for i in range(40)]
    spec = AcceptanceSpec(min_improvement=0.0, alpha=0.05, resamples=400)
    hits = sum(
        GroupSequential(spec, seed=t)
        .decide(_null_scores(rng, ids), _null_scores(rng, ids))
        .accepted  # fmt: skip
        for t in range(200)
    )
    assert hits <= _ceiling(200, 0.05), hits


def _null_run(rng: random.Random, seed: int, candidates: int, run_alpha: float | None) -> bool:
    """One run of `candidates` no-effect candidates: does it accept any?"""
    ids = [f"e{i:02d}" for i in range(40)]
    spec = AcceptanceSpec(min_improvement=0.0, alpha=0.05, resamples=400)
    inc = SimpleNamespace(scores=_null_scores(rng, ids), mean=0.5)
    prior: list[DecisionRecord] = []
    for _ in range(candidates):
        cand = _null_scores(rng, ids)
        d = staged_decide(GroupSequential(spec, seed=seed), "v", "i", inc, lambda k, xs, c=cand: {i: c[i] for i in xs}, prior, run_alpha, candidates)  # fmt: skip
        prior.append(d)
        if d.accepted:
            return True
    return False


def test_run_level_null_false_accepts_stay_within_run_alpha() -> None:
    """100 null runs of 6 candidates each: runs accepting anything <= 5% (+2 sd); the same runs
    tested at the per-decision alpha alone accept more often (the control is doing something)."""
    runs = 100
    controlled = sum(_null_run(random.Random(r), r, 6, 0.05) for r in range(runs))
    per_decision = sum(_null_run(random.Random(r), r, 6, None) for r in range(runs))
    assert controlled <= _ceiling(runs, 0.05), controlled
    assert per_decision > controlled, (per_decision, controlled)


def test_a_run_killed_between_looks_resumes_to_the_same_decision(project, monkeypatch) -> None:
    """The first look of v001 is recorded, the second is cut off (as by kill -9): the resumed
    run replays look 1 from the event log and reaches the decision an uninterrupted run reaches."""
    import fapo.sequential as seq
    from fapo.loop import RunOptions, run

    budget = {"max_variants": 1}
    ref = run("demo-qa", RunOptions(agent="builtin", run_id="ref", budget=budget), project)
    expected = json.loads((ref.run_dir / "variants/v001/decision.json").read_text())
    assert expected["stats"]["n"] < 40 or len(expected["stats"]["looks"]) > 1

    real, looks = seq.eval_look, []

    def cut(run_: object, vid: str, look: int, ids: list[str]) -> dict[str, float]:
        looks.append(look)
        if look == 2:
            raise KeyboardInterrupt  # the process dies inside look 2
        return real(run_, vid, look, ids)

    monkeypatch.setattr(seq, "eval_look", cut)
    with pytest.raises(KeyboardInterrupt):
        run("demo-qa", RunOptions(agent="builtin", run_id="cut", budget=budget), project)
    monkeypatch.setattr(seq, "eval_look", real)
    log = ref.run_dir.parent / "cut" / "events.jsonl"
    before = [json.loads(x) for x in log.read_text().splitlines()]
    assert ("eval", "v001/look1/val") in {(e["kind"], e["key"]) for e in before}
    assert not any(e["kind"] == "decision" for e in before)

    res = run("demo-qa", RunOptions(agent="builtin", run_id="cut", resume=True), project)
    got = json.loads((res.run_dir / "variants/v001/decision.json").read_text())
    assert {k: got[k] for k in ("status", "reason", "stats")} == {
        k: expected[k] for k in ("status", "reason", "stats")
    }
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert events[: len(before)] == before  # nothing recorded was redone
    keys = [(e["kind"], e["key"]) for e in events]
    assert len(keys) == len(set(keys)) and ("eval", "v001/look2/val") in keys
    info = json.loads((res.run_dir / "run.json").read_text())
    assert info["error_control"]["guaranteed"] and info["error_control"]["run_alpha"] == 0.05
    assert (
        "Run-level error control: P(the run accepts any no-effect change) <= 0.05"
        in (res.run_dir / "report.md").read_text()
    )


def test_a_look_missing_examples_is_rejected_not_crashed() -> None:
    cand, inc = _table(40, wins=set(range(40)))
    summary = SimpleNamespace(scores=inc, mean=0.5)
    look = lambda k, ids: {i: cand[i] for i in ids[1:]}  # noqa: E731 - drops one example
    d = staged_decide(GroupSequential(AcceptanceSpec(resamples=200)), "v", "i", summary, look, [], 0.05, 12)  # fmt: skip
    assert d.status is Status.REJECTED and "same examples" in d.reason

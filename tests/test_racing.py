"""Racing candidate moves (fapo/racing.py) on known score tables: the best move is kept, fewer
example scorings than scoring every move on all of train, every arm compared with the incumbent
on the same examples, and a field where nothing gains ends without finalists."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import pytest

from fapo import racing
from fapo.racing import Dropped, Exhaustive, SuccessiveHalving


class Table:
    """A score table arm -> example -> score, and a log of what the race asked for."""

    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        self.table = table
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, arm: str, ids: Sequence[str]) -> Mapping[str, float]:
        self.asked.append((arm, tuple(ids)))
        return {i: self.table[arm][i] for i in ids}


def _table(seed: int, n: int = 40, arms: int = 17) -> tuple[dict[str, float], dict]:
    """Incumbent fails a seeded share of `n` examples; each arm repairs a seeded share of those
    failures and breaks a few passes. Arm a00 repairs the most and breaks nothing."""
    rng = random.Random(seed)
    ids = [f"e{i:02d}" for i in range(n)]
    inc = {i: (0.0 if rng.random() < 0.6 else 1.0) for i in ids}
    fails = [i for i in ids if inc[i] < 1]
    table: dict[str, dict[str, float]] = {}
    for a in range(arms):
        q = 0.6 if a == 0 else rng.choice([0.0, 0.0, 0.1, 0.2, 0.3])
        broken = 0.0 if a == 0 else rng.choice([0.0, 0.1])
        row = dict(inc)
        for i in fails:
            row[i] = 1.0 if rng.random() < q else 0.0
        for i in ids:
            if inc[i] >= 1 and rng.random() < broken:
                row[i] = 0.0
        table[f"a{a:02d}"] = row
    return inc, table


def _best(inc: Mapping[str, float], table: dict[str, dict[str, float]]) -> str:
    means = {a: sum(r.values()) / len(r) for a, r in table.items()}
    return max(table, key=lambda a: means[a])  # first of the ties, like the stable sort


@pytest.mark.parametrize("seed", range(30))
def test_the_race_keeps_the_best_move_with_fewer_scorings(seed: int) -> None:
    inc, table = _table(seed)
    scorer = Table(table)
    res = SuccessiveHalving(seed=seed)(list(table), scorer, inc)
    full = Exhaustive()(list(table), Table(table), inc)
    assert res.finalists[0].arm == full.finalists[0].arm == _best(inc, table)
    assert res.finalists[0].mean == pytest.approx(full.finalists[0].mean)
    assert res.evaluations < full.evaluations
    assert res.evaluations == sum(len(ids) for _, ids in scorer.asked)


def test_over_many_tables_the_race_takes_under_half_the_scorings() -> None:
    spent = full = 0
    for seed in range(30):
        inc, table = _table(seed)
        res = SuccessiveHalving(seed=seed)(list(table), Table(table), inc)
        spent, full = spent + res.evaluations, full + res.exhaustive
    assert spent < 0.5 * full, spent / full


def test_every_arm_is_scored_on_the_same_examples_screen_first() -> None:
    inc, table = _table(3)
    scorer = Table(table)
    SuccessiveHalving(seed=3)(list(table), scorer, inc)
    order, screen = racing.race_order(inc, 3, 8)
    seen: dict[str, list[str]] = {}
    for arm, ids in scorer.asked:
        seen.setdefault(arm, []).extend(ids)
    for arm, ids in seen.items():
        assert ids == order[: len(ids)], arm  # a prefix of one shared order: the same examples
    assert screen == 8 and all(inc[i] < 1 for i in order[:screen])
    assert sorted(order) == sorted(inc)


def test_a_move_that_repairs_failures_but_breaks_passes_loses_the_race() -> None:
    """Ranking on failures alone would keep `breaks` (it repairs the most) and drop `clean`."""
    ids = [f"e{i:02d}" for i in range(40)]
    inc = {i: (0.0 if k < 20 else 1.0) for k, i in enumerate(ids)}
    breaks = {i: 1.0 if k < 20 else (0.0 if k % 4 else 1.0) for k, i in enumerate(ids)}
    clean = {i: 1.0 if k < 20 and k % 2 else inc[i] for k, i in enumerate(ids)}
    table = {"breaks": breaks, **{f"m{a}": {i: (1.0 if k < 20 and k % 3 == a else inc[i]) for k, i in enumerate(ids)} for a in range(3)}, "clean": clean}  # fmt: skip
    res = SuccessiveHalving()(list(table), Table(table), inc)
    assert res.finalists[0].arm == _best(inc, table) == "clean"


def test_ties_go_to_the_earlier_arm_as_in_exhaustive_scoring() -> None:
    ids = [f"e{i}" for i in range(20)]
    inc = dict.fromkeys(ids, 0.0)
    same = {i: (1.0 if int(i[1:]) % 2 else 0.0) for i in ids}
    table = {"z-first": dict(same), "a-second": dict(same), "none": dict(inc)}
    res = SuccessiveHalving()(list(table), Table(table), inc)
    assert [s.arm for s in res.finalists] == ["z-first"]
    assert res.standings[1].dropped is Dropped.CUT


def test_nothing_gains_ends_the_race_after_the_minimum_evidence() -> None:
    ids = [f"e{i:02d}" for i in range(80)]
    inc = {i: (0.0 if k % 4 == 0 else 1.0) for k, i in enumerate(ids)}  # 20 failures
    table = {f"m{a}": dict(inc) for a in range(10)}  # no arm changes anything
    res = SuccessiveHalving(min_evidence=8)(list(table), Table(table), inc)
    assert res.finalists == [] and res.no_gain
    assert {s.dropped for s in res.standings} == {Dropped.NO_GAIN}
    assert res.evaluations == 10 * 8  # each arm on 8 failures, never on the 60 passes
    assert res.failures == 20 and res.examples == 80


def test_a_favoured_arm_survives_the_cuts_while_it_gains() -> None:
    ids = [f"e{i:02d}" for i in range(32)]
    inc = dict.fromkeys(ids, 0.0)
    table = {f"m{a}": {i: (1.0 if k % (a + 2) == 0 else 0.0) for k, i in enumerate(ids)} for a in range(8)}  # fmt: skip
    plain = SuccessiveHalving()(list(table), Table(table), inc)
    fav = SuccessiveHalving()(list(table), Table(table), inc, favoured={"m5"})
    assert "m5" not in [s.arm for s in plain.finalists]
    assert "m5" in [s.arm for s in fav.finalists]


def test_a_favoured_arm_that_stopped_gaining_is_cut_like_any_other() -> None:
    """Favoured protects an arm from being out-ranked, not an arm estimated at no gain: m9
    repairs the screen's failures but breaks every pass, so once passes are scored its
    estimate is below zero and it leaves at the next cut (it could never be the pick)."""
    ids = [f"e{i:02d}" for i in range(48)]
    inc = {i: (0.0 if k < 16 else 1.0) for k, i in enumerate(ids)}
    table = {f"m{a}": {i: (1.0 if (k < 16 and k % (a + 2) == 0) or k >= 16 else 0.0) for k, i in enumerate(ids)} for a in range(6)}  # fmt: skip
    table["m9"] = {i: (1.0 if k < 16 else 0.0) for k, i in enumerate(ids)}
    res = SuccessiveHalving()(list(table), Table(table), inc, favoured={"m9"})
    m9 = next(s for s in res.standings if s.arm == "m9")
    assert m9.dropped is Dropped.CUT and m9.n < len(ids)
    assert "m9" not in [s.arm for s in res.finalists]


def test_same_seed_same_race_and_progress_reaches_the_total() -> None:
    inc, table = _table(11)
    ticks: list[tuple[int, int]] = []
    a = SuccessiveHalving(seed=5)(list(table), Table(table), inc, on_scored=lambda d, t: ticks.append((d, t)))  # fmt: skip
    b = SuccessiveHalving(seed=5)(list(table), Table(table), inc)
    assert a == b
    assert ticks[-1] == (len(table), len(table))
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_gating_off_scores_every_move_on_all_of_train(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(racing.GATING_ENV, "off")
    assert isinstance(racing.default_race(), Exhaustive)
    monkeypatch.delenv(racing.GATING_ENV)
    assert isinstance(racing.default_race(), SuccessiveHalving)


def test_rungs_start_with_the_screen_and_double() -> None:
    assert racing.rungs(8, 40) == [8, 16, 32, 40]
    assert racing.rungs(5, 80) == [5, 10, 20, 40, 80]
    assert racing.rungs(8, 8) == [8]


def test_an_incumbent_without_failures_needs_no_scoring() -> None:
    inc = {f"e{i}": 1.0 for i in range(10)}
    table = {"m": dict(inc)}
    scorer = Table(table)
    res = SuccessiveHalving()(["m"], scorer, inc)
    assert res.finalists == [] and res.evaluations == 0 and scorer.asked == []


def test_failures_attribution_probed_are_screened_first() -> None:
    inc, table = _table(3)
    fails = sorted(i for i, v in inc.items() if v < 1)
    probed = set(fails[-8:])  # the last ids: a seeded shuffle alone rarely puts all 8 first
    order, screen = racing.race_order(inc, seed=3, screen=8, cached=probed)
    assert screen == 8 and set(order[:8]) == probed
    assert sorted(order) == sorted(inc)  # every example still races, once
    plain, _ = racing.race_order(inc, seed=3, screen=8)
    assert set(plain[:8]) != probed
    scorer = Table(table)
    SuccessiveHalving(seed=3)(list(table), scorer, inc, cached=probed)
    assert all(set(ids) == probed for _, ids in scorer.asked[: len(table)])

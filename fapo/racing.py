"""Racing candidate moves on growing train minibatches: a screen on the incumbent's failures,
then successive halving on stratified estimates, only finalists scored on all of train.

A move can only gain on an example the incumbent fails, and can only lose on one it passes. So a
race screens every arm on a seeded sample of the failures (an arm that repairs none of them
leaves), then lets the rest run on doubling rungs that add failures and passes in proportion,
keeping the best half by estimated gain on all of train, until the survivors are scored on all
of it. Every arm is compared with the incumbent on the same examples (and, inside the scorer,
the same repeat indexes, so the same noise draws). `Exhaustive` is the old behaviour: every arm
on all of train.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

#: Environment switch: `FAPO_GATING=off` scores every move on all of train (the pre-gating loop;
#: `bench/loop_cost.py` measures both side by side).
GATING_ENV = "FAPO_GATING"


class ArmScorer(Protocol):
    """Per-example train scores (id -> mean over repeats) of one arm on `ids`."""

    def __call__(self, arm: str, ids: Sequence[str]) -> Mapping[str, float]: ...


#: Progress hook: (arms whose race is over, arms in the race).
OnScored = Callable[[int, int], None]


class Dropped(StrEnum):
    """Why an arm left the race before being scored on all of train."""

    NO_GAIN = "no_gain"  # repaired nothing on the failures it was scored on
    CUT = "cut"  # ranked below the kept share at a rung


@dataclass(frozen=True)
class Standing:
    """Where one arm ended: examples scored, its mean there, its gain over the incumbent on the
    same examples, and why it stopped (None: a finalist, scored on all of train)."""

    arm: str
    n: int
    mean: float
    gain: float
    dropped: Dropped | None = None


@dataclass(frozen=True)
class RaceResult:
    """The race's outcome. `standings` keeps the arms' order (the tie-break of the caller)."""

    base: float  # the incumbent's mean on all of train
    examples: int
    failures: int  # examples the incumbent does not solve (score < 1): where gains can happen
    standings: tuple[Standing, ...]
    evaluations: int  # arm x example scorings (each one `repeats` model runs in the scorer)
    rungs: tuple[int, ...] = field(default=())  # examples scored after each rung

    @property
    def finalists(self) -> list[Standing]:
        """Arms scored on all of train, best mean first (ties keep the arms' order)."""
        done = [s for s in self.standings if s.dropped is None]
        return sorted(done, key=lambda s: -s.mean)

    @property
    def exhaustive(self) -> int:
        """Scorings that scoring every arm on all of train would have taken."""
        return len(self.standings) * self.examples

    @property
    def no_gain(self) -> bool:
        """No arm gained over the incumbent on the examples it was scored on."""
        return all(s.gain <= 0 for s in self.standings)

    def summary(self) -> str:
        """One line: how far the race went and what it found."""
        left = self.finalists
        found = (
            f"best {left[0].arm}: {left[0].mean:.3f}"
            if left
            else f"none of {len(self.standings)} moves gained on the incumbent's failures"
        )
        return (
            f"{found}; {self.evaluations} of {self.exhaustive} example scorings, "
            f"{self.failures} of {self.examples} train examples failing"
        )

    def trials(self) -> list[dict[str, object]]:
        """Every arm where it stopped (for the proposal's transcript)."""
        return [
            {
                "move": s.arm,
                "examples": s.n,
                "mean": round(s.mean, 4),
                "gain": round(s.gain, 4),
                "dropped": s.dropped.value if s.dropped else None,
            }
            for s in self.standings
        ]


@runtime_checkable
class Race(Protocol):
    """Swappable racing scheme: arms in priority order, the scorer, the incumbent's per-example
    train scores (all of train), arms to keep through every cut while they gain (may be empty),
    train ids whose scorings are likely cache hits (raced first where the order is free)."""

    def __call__(
        self,
        arms: Sequence[str],
        score: ArmScorer,
        incumbent: Mapping[str, float],
        *,
        favoured: Collection[str] = (),
        on_scored: OnScored | None = None,
        cached: Collection[str] = (),
    ) -> RaceResult: ...


class _Tally:
    """Running sums per arm over the examples scored so far (the same examples for all), kept
    apart for the incumbent's failures and its passes."""

    def __init__(self, arms: Sequence[str], incumbent: Mapping[str, float]) -> None:
        self.inc = incumbent
        self.sum = dict.fromkeys(arms, 0.0)
        self.gain_f = dict.fromkeys(arms, 0.0)  # summed gain on the incumbent's failures
        self.gain_p = dict.fromkeys(arms, 0.0)  # summed gain (<= 0) on its passes
        self.n_f = dict.fromkeys(arms, 0)
        self.n_p = dict.fromkeys(arms, 0)
        self.evaluations = 0

    def add(self, arm: str, ids: Sequence[str], got: Mapping[str, float]) -> None:
        missing = [i for i in ids if i not in got]
        if missing:
            raise ValueError(f"the scorer returned no score for {missing[0]} (arm {arm})")
        for i in ids:
            self.sum[arm] += got[i]
            if self.inc[i] < 1.0:
                self.gain_f[arm] += got[i] - self.inc[i]
                self.n_f[arm] += 1
            else:
                self.gain_p[arm] += got[i] - self.inc[i]
                self.n_p[arm] += 1
        self.evaluations += len(ids)

    def estimate(self, arm: str, share_f: float) -> float:
        """Stratified estimate of the arm's mean gain on all of train: the mean gain on the
        failures and on the passes scored so far, weighted by their shares of train."""
        f = self.gain_f[arm] / self.n_f[arm] if self.n_f[arm] else 0.0
        p = self.gain_p[arm] / self.n_p[arm] if self.n_p[arm] else 0.0
        return share_f * f + (1.0 - share_f) * p

    def standing(self, arm: str, dropped: Dropped | None) -> Standing:
        n = self.n_f[arm] + self.n_p[arm]
        if not n:
            return Standing(arm, 0, 0.0, 0.0, dropped)
        gain = (self.gain_f[arm] + self.gain_p[arm]) / n
        return Standing(arm, n, self.sum[arm] / n, gain, dropped)


def rungs(screen: int, total: int) -> list[int]:
    """Examples scored after each rung: the screen, then doubling until all of train."""
    out: list[int] = []
    b = max(screen, 1)
    while b < total:
        out.append(b)
        b *= 2
    if total:
        out.append(total)
    return out


def race_order(
    incumbent: Mapping[str, float], seed: int, screen: int, cached: Collection[str] = ()
) -> tuple[list[str], int]:
    """Train ids in race order and the screen's size: `screen` of the incumbent's failures
    first, then the other failures and the passes interleaved in proportion, each group
    seeded-shuffled from sorted ids (so a resumed run races in the same order). Failures in
    `cached` (attribution probed them: its parameter moves on them replay from the call cache)
    come first among the failures; which ones were probed does not depend on any arm's scores."""
    rng = random.Random(seed)
    fail = sorted(i for i, v in incumbent.items() if v < 1.0)
    ok = sorted(i for i, v in incumbent.items() if v >= 1.0)
    rng.shuffle(fail)
    rng.shuffle(ok)
    fail.sort(key=lambda i: i not in cached)  # stable: the seeded order within each group
    head, rest = fail[: min(screen, len(fail))], fail[screen:]
    keyed = [((k + 0.5) / len(rest), 0, i) for k, i in enumerate(rest)]
    keyed += [((k + 0.5) / len(ok), 1, i) for k, i in enumerate(ok)]
    return head + [i for _, _, i in sorted(keyed)], len(head)


@dataclass(frozen=True)
class SuccessiveHalving:
    """Successive halving behind a screen on the incumbent's failures.

    Screen: every arm is scored on `min_evidence` of the incumbent's failures (all of them if
    fewer), and an arm that gained nothing there leaves. A move that repairs a share q of the
    failures shows no repair on m sampled ones with probability at most (1 - q)^m (0.4% for
    q = 1/2, m = 8: demo-qa's k=6 repairs 12 of the 24 failures at the parameter level); once
    all failures are scored no pass can add a gain, so the exit is then exact. Passes are not in
    the screen: a move can only lose on them.

    Halving: the rungs double, each adding the remaining failures and the passes in proportion.
    After each rung the arms are ranked by a stratified estimate of their gain on all of train
    (mean gain on the failures scored and on the passes scored, weighted by their shares of
    train, so a move that repairs a few failures but breaks passes ranks low), and the best
    1/`eta` carry on (at least `keep`, ties in arm order), plus the best favoured arm. Arms are
    never cut on failures alone while train has passes. Survivors are scored on all of train.
    """

    eta: float = 2.0
    keep: int = 1
    min_evidence: int = 8
    seed: int = 0

    def __call__(
        self,
        arms: Sequence[str],
        score: ArmScorer,
        incumbent: Mapping[str, float],
        *,
        favoured: Collection[str] = (),
        on_scored: OnScored | None = None,
        cached: Collection[str] = (),
    ) -> RaceResult:
        order, screen = race_order(incumbent, self.seed, self.min_evidence, cached)
        n_fail = sum(1 for v in incumbent.values() if v < 1.0)
        share_f = n_fail / len(order) if order else 0.0
        tally = _Tally(arms, incumbent)
        out: dict[str, Standing] = {}
        alive = list(arms)
        if not n_fail:  # the incumbent solves all of train: no move can gain anything
            out = {a: tally.standing(a, Dropped.NO_GAIN) for a in arms}
            alive = []
        sizes = rungs(screen, len(order)) if alive else []
        start = 0
        for size in sizes:
            batch = order[start:size]
            for arm in alive:
                tally.add(arm, batch, score(arm, batch))
            start = size
            if size >= len(order):
                break
            for arm in [a for a in alive if tally.gain_f[a] <= 0]:
                out[arm] = tally.standing(arm, Dropped.NO_GAIN)
            alive = [a for a in alive if tally.gain_f[a] > 0]
            if size > screen or n_fail == len(order):
                alive = self._cut(alive, tally, share_f, favoured, out)
            if on_scored:
                on_scored(len(out), len(arms))
            if not alive:
                break
        for arm in alive:
            out[arm] = tally.standing(arm, None)
        if on_scored:
            on_scored(len(out), len(arms))
        base = sum(incumbent.values()) / len(incumbent) if incumbent else 0.0
        return RaceResult(
            base=base,
            examples=len(order),
            failures=n_fail,
            standings=tuple(out[a] for a in arms),
            evaluations=tally.evaluations,
            rungs=tuple(s for s in sizes if s <= start),
        )

    def _cut(
        self,
        alive: list[str],
        tally: _Tally,
        share_f: float,
        favoured: Collection[str],
        out: dict[str, Standing],
    ) -> list[str]:
        """The best 1/eta of `alive` by estimated gain (stable: ties keep the arms' order), at
        least `keep`, plus the best favoured arm if it was cut while its estimate still gains (a
        favoured arm estimated at no gain on train cannot be the pick, which must beat the
        incumbent; carried to the end it cost up to two thirds of train at 3 draws, measured
        on the planted suite: kb-match's k=2 at -0.083, year-gap's dropped sentence at 0.0)."""
        n_keep = max(self.keep, math.ceil(len(alive) / self.eta))
        ranked = sorted(alive, key=lambda a: -tally.estimate(a, share_f))
        kept = ranked[:n_keep]
        fav = next((a for a in ranked if a in favoured and tally.estimate(a, share_f) > 0), None)
        if fav is not None and fav not in kept:
            kept.append(fav)
        for arm in alive:
            if arm not in kept:
                out[arm] = tally.standing(arm, Dropped.CUT)
        return [a for a in alive if a in kept]


@dataclass(frozen=True)
class Exhaustive:
    """Every arm on all of train (the loop before gating)."""

    def __call__(
        self,
        arms: Sequence[str],
        score: ArmScorer,
        incumbent: Mapping[str, float],
        *,
        favoured: Collection[str] = (),
        on_scored: OnScored | None = None,
        cached: Collection[str] = (),
    ) -> RaceResult:
        ids = sorted(incumbent)
        tally = _Tally(arms, incumbent)
        for k, arm in enumerate(arms, 1):
            tally.add(arm, ids, score(arm, ids))
            if on_scored:
                on_scored(k, len(arms))
        base = sum(incumbent.values()) / len(incumbent) if incumbent else 0.0
        return RaceResult(
            base=base,
            examples=len(ids),
            failures=sum(1 for v in incumbent.values() if v < 1.0),
            standings=tuple(tally.standing(a, None) for a in arms),
            evaluations=tally.evaluations,
            rungs=(len(ids),),
        )


Changes = Mapping[str, str | None]
#: The engine's train scorer: (changes, repeats=1, ids=None) -> score per example id.
TrainScore = Callable[..., Mapping[str, float]]


def race_moves(
    moves: Sequence[tuple[str, Changes]],
    train_score: TrainScore,
    repeats: int,
    *,
    favoured: Collection[str] = (),
    on_scored: OnScored | None = None,
    race: Race | None = None,
    cached: Collection[str] = (),
) -> tuple[RaceResult, list[tuple[float, str, Changes]]]:
    """Race the moves (id, file changes) with `repeats` per example; the result and the finalists
    as (train mean on all of train, id, changes), best first. The incumbent is scored once on all
    of train with the same repeats (the engine answers that from its train evaluation when the
    repeats match, without a call)."""
    by_id = dict(moves)
    incumbent = train_score({}, repeats=repeats)

    def score(arm: str, ids: Sequence[str]) -> Mapping[str, float]:
        return train_score(dict(by_id[arm]), repeats=repeats, ids=list(ids))

    result = (race or default_race())(
        list(by_id), score, incumbent, favoured=favoured, on_scored=on_scored, cached=cached
    )
    return result, [(s.mean, s.arm, by_id[s.arm]) for s in result.finalists]


def default_race(seed: int = 0) -> Race:
    """Successive halving, unless `FAPO_GATING=off` asks for every move on all of train."""
    if os.environ.get(GATING_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return Exhaustive()
    return SuccessiveHalving(seed=seed)

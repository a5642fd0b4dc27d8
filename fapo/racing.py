"""Racing candidate moves on growing train minibatches: the incumbent's failures first, the
promising half carries on, only finalists are scored on all of train (successive halving).

A move can only gain on an example the incumbent fails, and can only lose on one it passes. So a
race scores every arm on a seeded sample of the failures first, cuts the field at each rung
(rung sizes double), and checks the few that are left for regressions on the passes. Every arm
is compared with the incumbent on the same examples (and, inside the scorer, the same repeat
indexes, so the same noise draws). `Exhaustive` is the old behaviour: every arm on all of train.
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
    train scores (all of train), arms to keep through every cut while they gain (may be empty)."""

    def __call__(
        self,
        arms: Sequence[str],
        score: ArmScorer,
        incumbent: Mapping[str, float],
        *,
        favoured: Collection[str] = (),
        on_scored: OnScored | None = None,
    ) -> RaceResult: ...


class _Tally:
    """Running sums per arm over the examples scored so far (the same examples for all)."""

    def __init__(self, arms: Sequence[str], incumbent: Mapping[str, float]) -> None:
        self.inc = incumbent
        self.sum = dict.fromkeys(arms, 0.0)
        self.base = dict.fromkeys(arms, 0.0)
        self.n = dict.fromkeys(arms, 0)
        self.evaluations = 0

    def add(self, arm: str, ids: Sequence[str], got: Mapping[str, float]) -> None:
        missing = [i for i in ids if i not in got]
        if missing:
            raise ValueError(f"the scorer returned no score for {missing[0]} (arm {arm})")
        self.sum[arm] += sum(got[i] for i in ids)
        self.base[arm] += sum(self.inc[i] for i in ids)
        self.n[arm] += len(ids)
        self.evaluations += len(ids)

    def gain(self, arm: str) -> float:
        """Summed gain over the incumbent on the arm's examples (ranking key: same examples)."""
        return self.sum[arm] - self.base[arm]

    def standing(self, arm: str, dropped: Dropped | None) -> Standing:
        n = self.n[arm]
        mean = self.sum[arm] / n if n else 0.0
        return Standing(arm, n, mean, self.gain(arm) / n if n else 0.0, dropped)


def rungs(failures: int, total: int, first: int) -> list[int]:
    """Examples scored after each rung: doubling from `first` through the failures, a rung
    boundary where the failures end, then doubling again through the passes."""
    out: list[int] = []
    b = max(1, first)
    while b < failures:
        out.append(b)
        b *= 2
    if failures:
        out.append(failures)
    b = max(failures * 2, first)
    while b < total:
        out.append(b)
        b *= 2
    if total and (not out or out[-1] != total):
        out.append(total)
    return out


def failures_first(incumbent: Mapping[str, float], seed: int) -> tuple[list[str], int]:
    """Train ids in race order: the incumbent's failures, then its passes, each seeded-shuffled
    from sorted ids (the same order on a resumed run); and how many failures lead."""
    rng = random.Random(seed)
    fail = sorted(i for i, v in incumbent.items() if v < 1.0)
    ok = sorted(i for i, v in incumbent.items() if v >= 1.0)
    rng.shuffle(fail)
    rng.shuffle(ok)
    return fail + ok, len(fail)


@dataclass(frozen=True)
class SuccessiveHalving:
    """Failures-first successive halving.

    Rung sizes double from `first` examples (`rungs`). After each rung an arm leaves when it has
    gained nothing over the incumbent once it has seen `min_evidence` failures (or all of them):
    a move that repairs a share q of the failures shows no repair on m sampled ones with
    probability at most (1 - q)^m (0.4% for q = 1/2, m = 8: demo-qa's k=6 repairs 12 of the 24
    failures at the parameter level), and once all failures are scored no pass can add a gain,
    so the exit is then exact.
    Of the rest, the best 1/`eta` carry on (at least `keep`, ties in arm order), plus the best
    favoured arm. Survivors are scored on all of train.
    """

    first: int = 8
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
    ) -> RaceResult:
        order, n_fail = failures_first(incumbent, self.seed)
        tally = _Tally(arms, incumbent)
        alive = list(arms)
        out: dict[str, Standing] = {}
        sizes = rungs(n_fail, len(order), self.first)
        start = 0
        for size in sizes:
            batch = order[start:size]
            for arm in alive:
                tally.add(arm, batch, score(arm, batch))
            start = size
            if size >= len(order):
                break
            seen_fail = min(size, n_fail)
            if seen_fail >= min(self.min_evidence, n_fail):
                for arm in [a for a in alive if tally.gain(a) <= 0]:
                    out[arm] = tally.standing(arm, Dropped.NO_GAIN)
                alive = [a for a in alive if tally.gain(a) > 0]
            alive = self._cut(alive, tally, favoured, out)
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
        self, alive: list[str], tally: _Tally, favoured: Collection[str], out: dict[str, Standing]
    ) -> list[str]:
        """The best 1/eta of `alive` by summed gain (stable: ties keep the arms' order), at
        least `keep`, plus the best favoured arm if it was cut."""
        n_keep = max(self.keep, math.ceil(len(alive) / self.eta))
        ranked = sorted(alive, key=lambda a: -tally.gain(a))
        kept = ranked[:n_keep]
        fav = next((a for a in ranked if a in favoured), None)
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
        list(by_id), score, incumbent, favoured=favoured, on_scored=on_scored
    )
    return result, [(s.mean, s.arm, by_id[s.arm]) for s in result.finalists]


def default_race(seed: int = 0) -> Race:
    """Successive halving, unless `FAPO_GATING=off` asks for every move on all of train."""
    if os.environ.get(GATING_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return Exhaustive()
    return SuccessiveHalving(seed=seed)

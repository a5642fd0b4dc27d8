"""The statistics behind summaries and acceptance: bootstrap intervals and one-sided paired tests.

Pure Python with a seeded RNG, so every decision is reproducible from the recorded scores.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def bootstrap_ci(
    xs: Sequence[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    n = len(xs)
    if n == 0:
        return (0.0, 0.0)
    if n == 1 or min(xs) == max(xs):
        return (xs[0], xs[0]) if n == 1 else (min(xs), min(xs))
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(xs, k=n)) / n for _ in range(resamples))
    lo = means[int((1 - level) / 2 * resamples)]
    hi = means[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return (lo, hi)


@dataclass(frozen=True)
class PairedTest:
    """Result of comparing candidate vs incumbent on the same examples (per-example differences)."""

    n: int
    mean_diff: float
    p_value: float
    test: str
    resamples: int
    wins: int
    losses: int
    ties: int
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)


def paired_test(
    candidate: Sequence[float],
    incumbent: Sequence[float],
    *,
    method: str = "permutation",
    resamples: int = 10000,
    seed: int = 0,
) -> PairedTest:
    """One-sided test of H1: candidate > incumbent, on paired per-example scores.

    permutation: sign-flip test of the mean difference (exact in distribution under H0 of
    exchangeable signs); bootstrap: share of resampled mean differences <= 0 after centring.
    The +1 correction keeps the p-value valid (never 0) for a finite number of resamples.
    """
    if len(candidate) != len(incumbent):
        raise ValueError("paired scores must have the same length")
    diffs = [c - i for c, i in zip(candidate, incumbent, strict=True)]
    n = len(diffs)
    observed = mean(diffs)
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    rng = random.Random(seed)
    nonzero = [d for d in diffs if d != 0]
    if not nonzero:
        p = 1.0
    elif method == "permutation":
        total = sum(nonzero)
        hits = 0
        for _ in range(resamples):
            s = sum(d if rng.random() < 0.5 else -d for d in nonzero)
            if s >= total - 1e-12:
                hits += 1
        p = (hits + 1) / (resamples + 1)
    elif method == "bootstrap":
        centred = [d - observed for d in diffs]
        hits = sum(sum(rng.choices(centred, k=n)) / n >= observed - 1e-12 for _ in range(resamples))
        p = (hits + 1) / (resamples + 1)
    else:
        raise ValueError(f"unknown test {method!r}")
    lo, hi = bootstrap_ci(diffs, seed=seed)
    return PairedTest(
        n=n,
        mean_diff=observed,
        p_value=p,
        test=method,
        resamples=resamples,
        wins=wins,
        losses=losses,
        ties=n - wins - losses,
        ci_low=lo,
        ci_high=hi,
    )


def percentile(xs: Sequence[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    k = (len(s) - 1) * q
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)

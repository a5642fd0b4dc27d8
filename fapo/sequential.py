"""Sequential acceptance: a candidate is evaluated on val in nested looks and stopped early when the
paired evidence is decisive (group-sequential sign-flip test, Lan–DeMets alpha spending, a
non-binding futility stop), at a per-decision level that keeps the run's family-wise error ≤ run_alpha.

Why a conditional sign-flip test and not normal boundaries: val scores are mostly 0/1 and a look
often has a handful of discordant pairs, where a normal approximation is anti-conservative (5 wins
of 5 gives z = 2.24 > 1.99, exact p = 1/32). Given the per-example magnitudes |dᵢ|, the null makes
every sign a fair coin, so the joint law of the looks' partial sums is simulated exactly (up to
Monte Carlo error) and each look's boundary spends exactly its share of alpha. The normal
boundaries (`normal_bounds`) are the same design in the large-sample limit (documented, tested
against published values).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fapo.compare import Decision
from fapo.records import DecisionRecord, Status
from fapo.spec import AcceptanceSpec
from fapo.stats import bootstrap_ci

if TYPE_CHECKING:
    from fapo.evaluate import EvalSummary
    from fapo.events import EventLog
    from fapo.loop import Run

_N = NormalDist()
EXACT_UP_TO = 14  # discordant pairs up to which every sign vector is enumerated (2^14 = 16,384)


# -- alpha spending ------------------------------------------------------------------------------
def spent(t: float, alpha: float, kind: str = "obrien-fleming") -> float:
    """Lan–DeMets spending function: alpha spent by information fraction t (one-sided)."""
    if t <= 0:
        return 0.0
    if t >= 1:
        return alpha
    if kind == "obrien-fleming":
        return 2.0 - 2.0 * _N.cdf(_N.inv_cdf(1 - alpha / 2) / math.sqrt(t))
    if kind == "pocock":
        return alpha * math.log(1 + (math.e - 1) * t)
    raise ValueError(f"unknown spending function {kind!r}")


# -- the group-sequential sign-flip test ---------------------------------------------------------
class LookOutcome(enum.Enum):
    CONTINUE = "continue"
    EFFICACY = "efficacy"  # crossed the efficacy boundary (with mean gain ≥ min_improvement)
    FUTILITY = "futility"  # interim mean gain ≤ the futility threshold
    FINAL = "final"  # last look, boundary not crossed
    SMALL_GAIN = "small_gain"  # crossed the boundary but mean gain < min_improvement (last look)


def look_sizes(n: int, looks: int) -> list[int]:
    """Cumulative examples at each look: equal shares, at least 4 new examples per look."""
    k = max(1, min(looks, n // 4))
    return [round(n * (j + 1) / k) for j in range(k)]


def look_order(ids: Sequence[str], seed: int) -> list[str]:
    """The fixed, seeded order in which val examples enter the looks (same for every candidate)."""
    order = sorted(ids)
    random.Random(f"fapo-looks:{seed}").shuffle(order)
    return order


@dataclass(frozen=True)
class GroupSequential:
    """Paired one-sided group-sequential test of H1: candidate > incumbent.

    At look k (the first n_k examples of `look_order`), reject H0 iff the Monte Carlo sign-flip
    p-value of the partial sum, counted only over simulated paths that crossed no earlier boundary,
    is ≤ spent(t_k) − spent(t_{k−1}), and the mean gain so far is ≥ min_improvement. Interim looks
    stop for futility when the mean gain so far ≤ `futility`; futility is non-binding (the efficacy
    boundaries ignore it), so alpha holds whether or not a look stops. `level` is the alpha this
    decision may spend (run-level control sets it); None means the spec's per-decision alpha.
    """

    spec: AcceptanceSpec
    seed: int = 0
    level: float | None = None

    @property
    def alpha(self) -> float:
        return self.spec.alpha if self.level is None else min(self.level, self.spec.alpha)

    def at_level(self, level: float) -> GroupSequential:
        return replace(self, level=level)

    def plan(self, ids: Sequence[str]) -> list[list[str]]:
        """The examples of each look (cumulative, nested)."""
        order = look_order(ids, self.seed)
        return [order[:n] for n in look_sizes(len(order), self.spec.looks)]

    def walk(self, candidate: Mapping[str, float], incumbent: Mapping[str, float], keys: Sequence[str] | None = None) -> Decision | None:  # fmt: skip
        """Walk the looks whose examples both have scores for; None = evaluate the next. `keys`:
        every val example (draw) of the design, when the incumbent is scored lazily, look by look."""
        plan = self.plan(sorted(incumbent if keys is None else keys))
        sizes = [len(p) for p in plan]
        order = plan[-1]
        alpha, kind = self.alpha, self.spec.spending
        budgets = [spent(n / sizes[-1], alpha, kind) - spent(m / sizes[-1], alpha, kind) for m, n in zip([0, *sizes[:-1]], sizes, strict=True)]  # fmt: skip
        looks: list[dict[str, Any]] = []
        for k, n in enumerate(sizes):
            if any(i not in candidate or i not in incumbent for i in order[:n]):
                return None
            d = [candidate[i] - incumbent[i] for i in order[:n]]
            total = sum(d)
            gain, budget = total / n, budgets[k]
            p, method = self._p_sequential(d, sizes[: k + 1], budgets[:k], len(order))
            last = k == len(sizes) - 1
            looks.append({"look": k + 1, "n": n, "mean_gain": gain, "p_seq": p, "spend": budget, "p_method": method})  # fmt: skip
            stats = self._stats(looks, sizes, candidate, incumbent, order[:n])
            if p <= budget and total > 0 and gain >= self.spec.min_improvement:
                return Decision(True, f"look {k + 1}/{len(sizes)} ({n} of {sizes[-1]} val examples): gain {gain:+.3f}, sequential p={p:.4f} <= {budget:.4f} (of level {alpha:.4f})", {**stats, "outcome": LookOutcome.EFFICACY.value})  # fmt: skip
            if last:
                out = LookOutcome.SMALL_GAIN if p <= budget and total > 0 else LookOutcome.FINAL
                why = (
                    f"mean gain {gain:+.3f} is below the required {self.spec.min_improvement:.3f}"
                    if out is LookOutcome.SMALL_GAIN or gain < self.spec.min_improvement
                    else f"gain {gain:+.3f} is not significant (sequential p={p:.4f} > {budget:.4f}, level {alpha:.4f})"
                )
                return Decision(False, why, {**stats, "outcome": out.value})
            if gain <= self.spec.futility:
                return Decision(False, f"stopped for futility at look {k + 1}/{len(sizes)} ({n} of {sizes[-1]} val examples): mean gain {gain:+.3f} <= {self.spec.futility:+.3f}", {**stats, "outcome": LookOutcome.FUTILITY.value})  # fmt: skip
        return None

    def _p_sequential(self, d: list[float], cuts: list[int], budgets: list[float], n_total: int) -> tuple[float, str]:  # fmt: skip
        """P-value of the last look in `cuts` among sign vectors that crossed no earlier look's
        boundary (`budgets` of the earlier looks). Every sign vector is enumerated when at most
        EXACT_UP_TO pairs are discordant (exact: small looks are where Monte Carlo noise matters,
        e.g. 8 wins of 8 has p = 1/256 against a run-level spend of 0.0041); otherwise
        `resamples` seeded vectors plus the observed one. Depends only on the looks up to this one,
        so a staged evaluation and `decide` on complete scores reach the same decision."""
        nz = [(j, x) for j, x in enumerate(d) if x != 0]
        if len(nz) <= EXACT_UP_TO:
            vectors, extra, method = range(2 ** len(nz)), 0, "exact"
            bit = {j: b for b, (j, _) in enumerate(nz)}
        else:
            rng = random.Random(self.seed)
            vectors = [rng.getrandbits(n_total) for _ in range(self.spec.resamples)]
            extra, method, bit = 1, "monte-carlo", {j: j for j, _ in nz}
        denom = len(vectors) + extra
        per_look = [[(bit[j], x) for j, x in nz if lo <= j < hi] for lo, hi in zip([0, *cuts[:-1]], cuts, strict=True)]  # fmt: skip
        sums = [0.0] * len(vectors)
        alive = list(range(len(vectors)))
        for k, part in enumerate(per_look):
            for s, v in enumerate(vectors):
                sums[s] += sum(-x if v >> b & 1 else x for b, x in part)
            if k < len(per_look) - 1:
                alive = _survivors(alive, sums, budgets[k], denom, extra)
        total = sum(d)
        hits = sum(sums[s] >= total - 1e-9 for s in alive)
        return (hits + extra) / denom, method

    def _stats(self, looks: list[dict[str, Any]], sizes: list[int], cand: Mapping[str, float], inc: Mapping[str, float], seen: list[str]) -> dict[str, Any]:  # fmt: skip
        n = len(seen)
        diffs = [cand[i] - inc[i] for i in seen]
        lo, hi = bootstrap_ci(diffs, seed=self.seed)
        return {
            "design": "group-sequential sign-flip",
            "spending": self.spec.spending,
            "looks": looks,
            "look_sizes": sizes,
            "n": n,
            "n_total": sizes[-1],
            "mean_diff": sum(cand[i] - inc[i] for i in seen) / n,
            "wins": sum(cand[i] > inc[i] for i in seen),
            "losses": sum(cand[i] < inc[i] for i in seen),
            "ties": sum(cand[i] == inc[i] for i in seen),
            "ci_low": lo,
            "ci_high": hi,
            "candidate_mean": sum(cand[i] for i in seen) / n,
            "incumbent_mean": sum(inc[i] for i in seen) / n,
            **(
                {"incumbent_mean_full": sum(inc.values()) / len(inc)}
                if len(inc) == sizes[-1]
                else {}
            ),
            "alpha": self.alpha,
            "per_decision_alpha": self.spec.alpha,
            "min_improvement": self.spec.min_improvement,
            "futility": self.spec.futility,
            "resamples": self.spec.resamples,
            "test": "sequential-permutation",
            "p_value": looks[-1]["p_seq"],
        }

    def decide(self, candidate: dict[str, float], incumbent: dict[str, float]) -> Decision:
        """The AcceptanceRule on complete scores: the decision the looks would reach."""
        if set(candidate) != set(incumbent):
            return Decision(False, "candidate and incumbent were not scored on the same examples")
        d = self.walk(candidate, incumbent)
        assert d is not None  # every look has its examples
        return d


def _survivors(alive: list[int], sums: list[float], budget: float, denom: int, extra: int) -> list[int]:  # fmt: skip
    """Paths that did not cross this look's boundary. A path crosses when its own p-value,
    (#alive paths with a sum >= its sum + extra) / denom, is <= budget; ties all cross or none."""
    allowed = math.floor(budget * denom - extra + 1e-12)  # most alive paths at/above the boundary
    if allowed <= 0:
        return alive
    ranked = sorted(alive, key=lambda s: -sums[s])
    cut = min(allowed, len(ranked))
    while 0 < cut < len(ranked) and sums[ranked[cut - 1]] <= sums[ranked[cut]] + 1e-9:
        cut -= 1
    return ranked[cut:]


# -- run-level error control ---------------------------------------------------------------------
@dataclass(frozen=True)
class RunLevel:
    """Online fallback (Tian & Ramdas 2021) over the run's comparisons: comparison j may spend
    run_alpha/H (H = the run's candidate budget), plus the whole level of comparison j−1 if that one
    accepted. FWER ≤ run_alpha under any dependence between decisions (see docs/loop.md)."""

    index: int  # 1-based comparison number in the run
    horizon: int
    level: float
    carried: float  # from the previous comparison, accepted

    def as_dict(self) -> dict[str, Any]:
        return {"comparison": self.index, "horizon": self.horizon, "level": self.level, "carried": self.carried}  # fmt: skip


def run_level(prior: Sequence[DecisionRecord], run_alpha: float, horizon: int) -> RunLevel:
    """The level of the next comparison from the run's earlier decisions (in order)."""
    done = [d for d in prior if d.status is not Status.INVALID and "run_level" in d.stats]
    if done:  # the horizon of the run's first comparison stays (a resume may raise the budget)
        horizon = int(done[0].stats["run_level"]["horizon"])
    j = len(done) + 1
    own = run_alpha / horizon if j <= horizon else 0.0
    carried = 0.0
    if done and done[-1].accepted:
        carried = float(done[-1].stats["run_level"]["level"])
    return RunLevel(index=j, horizon=horizon, level=own + carried, carried=carried)


# -- staged evaluation in the loop --------------------------------------------------------------
@runtime_checkable
class Staged(Protocol):
    """An AcceptanceRule that can decide from the looks evaluated so far (`walk` → None = more)."""

    def plan(self, ids: Sequence[str]) -> list[list[str]]: ...
    def walk(self, candidate: Mapping[str, float], incumbent: Mapping[str, float], keys: Sequence[str] | None = None) -> Decision | None: ...  # fmt: skip
    def at_level(self, level: float) -> Staged: ...


def staged_decide(
    rule: Staged,
    variant: str,
    incumbent: str,
    inc: EvalSummary,
    evaluate_look: Callable[[int, list[str]], dict[str, float]],
    prior: Sequence[DecisionRecord],
    run_alpha: float | None,
    horizon: int,
    incumbent_look: Callable[[int, list[str]], dict[str, float]] | None = None,
    keys: Sequence[str] | None = None,
) -> DecisionRecord:
    """The compare stage in looks: evaluate each look's new examples (`evaluate_look(k, ids)`, a
    memoized evaluation) until the rule decides. The level comes from the run-level control.

    With `incumbent_look` the incumbent is scored lazily too: `keys` are the design's examples
    (draws) and `inc.scores` holds what is already known; each look asks for the incumbent's
    missing ones of that look only, so a candidate stopped at look 1 never pays the rest."""
    budget = run_level(prior, run_alpha, horizon) if run_alpha is not None else None
    if budget is not None:
        rule = rule.at_level(budget.level)
    keys = sorted(inc.scores if keys is None else keys)
    known = dict(inc.scores)
    scores: dict[str, float] = {}
    done: list[str] = []
    decision = None
    for k, ids in enumerate(rule.plan(keys), start=1):
        if new := [i for i in ids if i not in done and i not in scores]:  # draws come per example
            scores.update(evaluate_look(k, new))
        if incumbent_look is not None and (missing := [i for i in ids if i not in known]):
            known.update(incumbent_look(k, missing))
        done = ids
        if (decision := rule.walk(scores, known, keys)) is not None:
            break
    if decision is None:  # a look came back without some of its examples
        decision = Decision(False, "candidate and incumbent were not scored on the same examples")
    stats = {**decision.stats, **({"run_level": {**budget.as_dict(), "run_alpha": run_alpha}} if budget else {})}  # fmt: skip
    n = len(scores)
    return DecisionRecord(
        variant=variant,
        incumbent=incumbent,
        status=Status.ACCEPTED if decision.accepted else Status.REJECTED,
        reason=decision.reason,
        stats=stats,
        candidate_val=sum(scores.values()) / max(1, n),
        incumbent_val=inc.mean,
    )


def prior_decisions(log: EventLog) -> list[DecisionRecord]:
    """The run's recorded decisions, in order (the run-level control reads their levels)."""
    return [DecisionRecord.model_validate(e["data"]) for e in log.events if e["kind"] == "decision"]


def eval_look(
    run: Run, vid: str, look: int, ids: list[str], draws: int | None = None
) -> dict[str, float]:
    """Evaluate the new examples of one look on val, once per run: an `eval` event keyed
    `<vid>/look<k>/val` (a resume replays it), files in variants/<vid>/eval/val-look<k>/. The full
    val of an accepted candidate is evaluated afterwards as usual; the call cache replays the
    looks' calls there, so only the examples no look reached cost calls.

    With `draws` (sampling variants, fapo/noise.py) `ids` are draw keys `id#r`: exactly those
    draws are evaluated (`val-r<draws>-look<k>/`) and their scores come back."""
    tag = "val" if draws is None else f"val-r{draws}"
    got = _eval_look(run, vid, f"{vid}/look{look}/{tag}", run.vdir(vid) / "eval" / f"{tag}-look{look}", look, ids, draws)  # fmt: skip
    if missing := [i for i in ids if i not in got]:
        # An incumbent's look k is the look k it was evaluated on as a candidate (the plan
        # depends only on the val ids and the seed), so this is a safeguard, not a path taken.
        digest = hashlib.sha256("\n".join(sorted(missing)).encode()).hexdigest()[:8]
        got.update(_eval_look(run, vid, f"{vid}/look{look}/{tag}/{digest}", run.vdir(vid) / "eval" / f"{tag}-look{look}-{digest}", look, missing, draws))  # fmt: skip
    return {i: got[i] for i in ids if i in got}


def _eval_look(run: Run, vid: str, key: str, out: Path, look: int, ids: list[str], draws: int | None) -> dict[str, float]:  # fmt: skip
    """One memoized look evaluation under the event key `key` (see `eval_look`)."""
    from fapo import observers as obs
    from fapo.evaluate import EvalSummary
    from fapo.noise import on_draws
    from fapo.records import EvalRecord

    wanted = frozenset(i.rsplit("#", 1)[0] if draws else i for i in ids)

    def go() -> EvalRecord:
        run._notify(obs.EvalStarted(variant=vid, split=f"val (look {look}, {len(wanted)} examples)"))  # fmt: skip
        reps = draws or run.tenant.spec.acceptance.repeats
        # moves: only the look's draws, not every draw of its examples (a look of 60 of 180
        # draws touched 34 of 36 examples, so it paid nearly the whole val at 5 draws:
        # news-section's first looks cost 918-1,224 calls against 90-120 for the second)
        pairs = [(i.rsplit("#", 1)[0], int(i.rsplit("#", 1)[1])) for i in ids] if draws else None
        s = run._evaluate(
            run.variants[vid], "val", out_dir=out, repeats=reps, ids=wanted, draws=pairs
        )
        if run.cache is not None:
            run.cache.flush()
        return EvalRecord(mean=s.mean, n=s.n, calls=s.calls, errors=s.errors)

    run.log.memo("eval", key, EvalRecord, go, run._budget)
    summary = EvalSummary.load(out / "summary.json")
    return dict(on_draws(summary, out / "results.jsonl").scores if draws else summary.scores)


def staged_compare(run: Run, vid: str, rule: Staged) -> DecisionRecord:
    """The loop's compare stage with a staged rule. When either variant samples (its recorded
    calls ran at temperature > 0; the candidate's show in its first look, asked only when the
    incumbent's do not), both are compared
    draw by draw on `fapo.noise.COMPARISON_REPEATS` draws per example: the choice follows from
    call settings, never from scores, so it is no extra look at the data."""
    from fapo.noise import comparison_repeats

    inc_id = run.st.incumbent
    inc = run.summaries[(inc_id, "val")]
    configured = run.tenant.spec.acceptance.repeats
    order = rule.plan(sorted(inc.scores))
    found = [run.vdir(inc_id) / "eval" / "val" / "results.jsonl"]
    # An incumbent that samples settles it: draws. Otherwise look 1 at the configured repeats
    # tells whether the candidate samples (the draw looks replay its calls from the call cache
    # where they cover the same examples, repeat 0). Asking the candidate when the incumbent
    # already answered paid a look that no decision read (news-section: 480 calls).
    if (reps := comparison_repeats(configured, found)) is None:
        eval_look(run, vid, 1, order[0])
        found.append(run.vdir(vid) / "eval" / "val-look1" / "results.jsonl")
        reps = comparison_repeats(configured, found)
    prior = prior_decisions(run.log)
    acc = run.tenant.spec.acceptance
    horizon = run.budget.spec.max_variants
    if reps is None:
        look = lambda k, ids: eval_look(run, vid, k, ids)  # noqa: E731
        return staged_decide(rule, vid, inc_id, inc, look, prior, acc.run_alpha, horizon)
    # Draw by draw, both sides lazily: the incumbent's draws of a look are the ones it was
    # evaluated on as a candidate (same plan), so they replay from the event log; only looks it
    # never reached cost calls. Evaluating its whole val at 5 draws up front paid for draws that
    # futility stops never looked at (news-section: 288-294 calls per incumbent).
    keys = [f"{i}#{r}" for i in inc.scores for r in range(reps)]
    look = lambda k, ids: eval_look(run, vid, k, ids, draws=reps)  # noqa: E731
    inc_look = lambda k, ids: eval_look(run, inc_id, k, ids, draws=reps)  # noqa: E731
    lazy = dataclasses.replace(inc, scores={})
    return staged_decide(rule, vid, inc_id, lazy, look, prior, acc.run_alpha, horizon, inc_look, keys)  # fmt: skip


def error_control(
    rule: object, spec: AcceptanceSpec, horizon: int, decisions: Sequence[DecisionRecord] = ()
) -> dict[str, Any]:
    """What a run guarantees about accepting no-effect changes (run.json, the reports)."""
    if isinstance(rule, Staged) and spec.run_alpha is not None:
        horizon = run_level(decisions, spec.run_alpha, horizon).horizon
        comparisons = sum("run_level" in d.stats for d in decisions)
        return {
            "guaranteed": True,
            "run_alpha": spec.run_alpha,
            "scheme": "online fallback",
            "horizon": horizon,
            "per_comparison": spec.run_alpha / horizon,
            "comparisons": comparisons,
            "text": (
                f"P(the run accepts any no-effect change) <= {spec.run_alpha:g}: comparison j may "
                f"spend {spec.run_alpha:g}/{horizon} (plus the level of comparison j-1 if that one "
                f"was accepted), each in {spec.looks} sequential look(s) at val"
            ),
        }
    return {
        "guaranteed": False,
        "per_decision_alpha": spec.alpha,
        "text": (
            f"not controlled for the run: each decision is tested at alpha {spec.alpha:g}, so k "
            f"comparisons may accept a no-effect change with probability up to k x {spec.alpha:g}"
            + ("" if isinstance(rule, Staged) else f" ({type(rule).__name__} is not staged)")
        ),
    }

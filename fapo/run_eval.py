"""Evaluating the run's variants: metered, cached, watched, once per run (memoized in the log)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fapo import observers as obs
from fapo import records as rec
from fapo.evaluate import EvalSummary, evaluate

if TYPE_CHECKING:
    from fapo.loop import Run
    from fapo.tenant import Tenant


def run_evaluate(run: Run, tenant: Tenant, split: str, watch: obs.Watch | None = None, **kw: Any) -> EvalSummary:  # fmt: skip
    """One evaluation under the run's meter, cache, concurrency and wall clock (not recorded)."""
    run.budget.check_clock()  # progress: the wall clock, before and inside every evaluation
    kw["on_progress"] = watch.tick if watch else run.progress.check  # progress:
    use_cache, conc = run.cache is not None, run.options.concurrency
    # sealing: candidate chain code is evaluated in the sandboxed worker unless --no-sandbox
    kw.setdefault("sandbox", run.options.agent_settings.get("sandbox") is not False)
    return evaluate(tenant, split, cache=run.cache, use_cache=use_cache, concurrency=conc, meter=run.meter, **kw)  # fmt: skip


def eval_once(run: Run, vid: str, split: str, repeats: int | None = None) -> EvalSummary:
    """Evaluate a variant on a split once per run (memoized by the event log)."""
    tag = split if repeats is None else f"{split}-r{repeats}"  # moves: noisy comparisons
    out = run.vdir(vid) / "eval" / tag

    def go() -> rec.EvalRecord:
        run._notify(obs.EvalStarted(variant=vid, split=split))
        reps = repeats or run.tenant.spec.acceptance.repeats
        watch = run.progress.evaluation(vid, tag)  # progress: examples done, calls, eta
        s = run._evaluate(run.variants[vid], split, watch, out_dir=out, repeats=reps)
        if run.cache is not None:  # runs: a cache write failure (disk full) stops here
            run.cache.flush()
        return rec.EvalRecord(mean=s.mean, n=s.n, calls=s.calls, errors=s.errors)

    _, replayed = run.log.memo("eval", f"{vid}/{tag}", rec.EvalRecord, go, run._budget)
    summary = EvalSummary.load(out / "summary.json")
    if (vid, tag) not in run.summaries:
        run._notify(obs.EvalFinished(variant=vid, split=split, mean=summary.mean, replayed=replayed))  # fmt: skip
    run.summaries[(vid, tag)] = summary
    return summary


def train_score(run: Run, changes: dict[str, str | None], repeats: int = 1, ids: Sequence[str] | None = None) -> dict[str, float]:  # fmt: skip
    """For the built-in agent: train score per example of incumbent+changes on `ids` (all of
    train when None), metered; the incumbent at its recorded repeats costs no call (gating)."""
    own = run.summaries[(run.st.incumbent, "train")]  # gating: same examples, same draws
    if not changes and repeats == own.repeats:  # gating:
        return {i: v for i, v in own.scores.items() if ids is None or i in ids}  # gating:
    s = run._evaluate(run.variants[run.st.incumbent].variant(changes), "train", repeats=repeats, ids=ids)  # fmt: skip
    run.progress.move_scored()  # progress: a scored move (the wall clock is asked too)
    return s.scores

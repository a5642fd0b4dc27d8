"""An upstream repair that only re-rolls a downstream sampling step's draw is not credited upstream.

An intervention at step S (oracle, parameter move, reference model) that changes the input of a
later step D sampling at temperature > 0 draws D afresh, even at D's recorded sample index (the
draw depends on the prompt). When the failure is D's own noise, that one fresh draw often lands
right and "S repaired" names the earliest step, S, as the cause: on planted year-gap with a flip
at `year_second` (temperature 1.0), the oracle at `lookup` repaired 3 of 3 such failures on one
draw and the verdict was lookup for all 3, while resampling `year_second` itself repaired 3 of 3
draws each.

The rule: when a repaired trial at S re-rolled a sampling step D downstream (D's output in the
trial's run differs from the recorded one), the trial is measured across D's draws (the trial's
own run plus `draws - 1` more, D drawn alone at new sample indexes in the trial's run, everything
else kept) and credited only if its repair rate exceeds D's own resample repair rate (upstream as
recorded) by at least one half. The difference of the two rates is the effect of S's change on
the repair with D's noise averaged out; under "S only re-rolls D" it is about zero, and half is
the bar a resample already needs to call a step noisy. On the year-gap case above: 3/3 - 3/3 = 0,
not credited, and the verdict moves to year_second (resample: noise). Where S is the cause (a
passage the lookup missed, D sampling but right given the passage) D's own resamples repair none
and the trial's draws repair as often as D reads right, so S keeps the credit.

No extra call is made where the question does not arise: a trial whose run re-rolled no
sampling step (every chain without a sampling step downstream of a repair) is left exactly as it
was, and so is one whose re-rolled steps' own resamples repaired none of their draws (then "S
only re-rolls D" predicts no repair, and the one observed speaks against it). Only the earliest
steps are settled: once a step keeps a repair, later steps cannot change the verdict.

A **resample** at S is such a trial too, once per draw: a draw that changes S's output changes D's
input, so D draws afresh, and when the failure is D's noise the resample "repairs" whenever S's
output moves and D's fresh draw lands right. Two consecutive sampling steps
(tests/two_samplers_tenant.py, `capital` at temperature 2.5 whose flips name another city on the
same river, `river` at 1.0 whose flips name the hills): resampling `capital` repaired 6 of 11
failures of `river`'s noise in at least half of its draws, and the verdict was noise at `capital`
(structure). Each repaired draw that re-rolled a sampling step is now measured like any trial (its
run plus `draws - 1` more of the re-rolled steps) and kept only if it beats their own resample rate
by one half; the resample repairs if at least half of its draws are kept (those 11: 10 go to
`river`, parameter level; the one left is an oracle/parameter repair at `capital` kept by this
rule, river's own resample rate being 3/6 there; over 8 more seeds of that tenant 26 of 58 such
failures were right before, 56 now, and the cases where only `capital`'s noise or both matter are
unchanged: 80/81 and 98/101). Draws of the same re-rolled state (several draws of S giving one
output) are measured once per settling.

A step fanned out with `Send` (several tasks of one name) is re-rolled when its instances'
results differ from the recorded ones as a set, and its draws redraw every instance.

When the re-rolled steps span several supersteps (S -> A -> B, both sampling, both re-rolled),
every extra draw redraws A alone at a new sample index and then B at the same index when its
superstep comes (everything else at the recorded index), and the bar is the highest of their own
resample rates. Before, only A was redrawn: B kept the trial's own draw whenever A's redraw gave
the same output, and with A's own rate at 0 the trial stood without a draw. A sibling sharing B's
superstep is drawn at that index too (a superstep runs at one index).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from langgraph.types import StateSnapshot

from fapo import fork
from fapo.intervention_records import Kind, Trial
from fapo.runtime import SAMPLE

if TYPE_CHECKING:
    from fapo.records import Example

#: The repair rate across the re-rolled step's draws must beat that step's own resample repair
#: rate by this much (a resample needs half of its draws to call a step noisy).
MARGIN = 0.5


@dataclass(frozen=True)
class Branch:
    """Where one trial's run ended: the graph that ran downstream, and its last checkpoint."""

    app: Any
    end: dict[str, Any]


class Runner(Protocol):
    """What settling needs of `fapo.interventions.InterventionRunner`."""

    draws: int | None

    async def _run(
        self, app: Any, inputs: Any, cfg: dict[str, Any], **kw: Any
    ) -> list[tuple[str, Any]]: ...

    def _score(self, ex: Example, values: dict[str, Any]) -> float: ...

    def _repaired(self, score: float, base: float) -> bool: ...


async def _downstream(branch: Branch, step: str) -> list[StateSnapshot]:
    """The checkpoints of the trial's run after `step`'s superstep, oldest first."""
    out: list[StateSnapshot] = []
    cfg: Any = branch.end
    while cfg is not None:
        snap = await branch.app.aget_state(cfg)
        if step in snap.next:
            break
        out.append(snap)
        cfg = snap.parent_config
    return out[::-1]


def _results(snap: StateSnapshot | None, name: str) -> list[str]:
    """The results of `name`'s tasks in `snap`'s superstep, as sorted JSON: one per task, so a
    step fanned out with `Send` (several tasks of one name) compares instance set to instance
    set, whatever order they ran in."""
    if snap is None:
        return []
    return sorted(
        json.dumps(t.result, sort_keys=True, default=str)
        for t in snap.tasks
        if t.name == name and t.result is not None
    )


async def rerolled(
    branch: Branch,
    step: str,
    before: dict[str, StateSnapshot],
    sampling: Collection[str],
) -> list[tuple[StateSnapshot, set[str]]]:
    """Every superstep after `step` in the trial's run with sampling steps whose output differs
    from the recorded run (its checkpoint and those steps), oldest first."""
    out: list[tuple[StateSnapshot, set[str]]] = []
    for snap in await _downstream(branch, step):
        rolled = {
            name
            for name in {t.name for t in snap.tasks if t.result is not None}
            if name in sampling
            and name != step
            and _results(snap, name) != _results(before.get(name), name)
        }
        if rolled:
            out.append((snap, rolled))
    return out


async def _rate(
    runner: Runner,
    ex: Example,
    first: bool,
    branch: Branch,
    at: StateSnapshot,
    rolled: set[str],
    later: set[str],
    base: float,
    draw_base: int,
    tick: Callable[[], None] | None,
) -> tuple[int, int]:
    """(repairs, draws) of a trial's run across the draws of the steps it re-rolled (the run
    itself, which repaired iff `first`, is draw 0): `rolled` (the earliest superstep's, at `at`)
    drawn alone at a new sample index, each of `later` (re-rolled in later supersteps) at the same
    index when its superstep comes, everything else at the recorded index."""
    draws = max(runner.draws or 1, 1)
    wins = int(first)
    thread: dict[str, Any] = {
        "configurable": {"thread_id": branch.end["configurable"]["thread_id"]}
    }
    app = branch.app
    for d in range(1, draws):
        if tick is not None:
            tick()
        start = await fork.alone(app, at, rolled)
        token = SAMPLE.set(draw_base + d)
        try:
            await runner._run(app, None, start, interrupt_after=sorted(rolled))
        finally:
            SAMPLE.reset(token)
        left = set(later)
        while left:
            now = left & set((await app.aget_state(thread)).next)
            if not now:  # on at the recorded index, up to the next re-rolled step's superstep
                await runner._run(app, None, thread, interrupt_before=sorted(left))
                now = left & set((await app.aget_state(thread)).next)
                if not now:  # the run ended (or took another route) before reaching them
                    break
            token = SAMPLE.set(draw_base + d)
            try:
                await runner._run(app, None, thread, interrupt_after=sorted(now))
            finally:
                SAMPLE.reset(token)
            left -= now
        await runner._run(app, None, thread)
        score = runner._score(ex, (await app.aget_state(thread)).values)
        wins += runner._repaired(score, base)
    return wins, draws


async def settle(
    runner: Runner,
    ex: Example,
    trials: list[Trial],
    branches: dict[int, Branch],
    *,
    order: list[str],
    before: dict[str, StateSnapshot],
    sampling: Collection[str],
    base: float,
    draw_base: int,
    tick: Callable[[], None] | None = None,
    resamples: dict[int, list[tuple[bool, Branch]]] | None = None,
) -> list[Trial]:
    """`trials` with every repair of the earliest repaired steps that re-rolled a downstream
    sampling step measured across that step's draws (see the module doc); `branches` maps a
    trial's index to its run, `resamples` a resample trial's index to its draws (repaired?, run),
    each repaired draw measured the same way; `tick` is asked before every extra draw (a run's
    wall clock)."""
    chance = {
        t.step: t.repairs / t.tries for t in trials if t.kind == Kind.RESAMPLE and t.tries > 0
    }
    measured: dict[str, tuple[int, int]] = {}  # a re-rolled state measured once per settling

    async def holds(
        ok: bool, branch: Branch, step: str
    ) -> tuple[bool, set[str], tuple[int, int] | None]:
        """Does a repaired run at `step` keep its repair: (kept, the sampling steps it re-rolled,
        (repairs, draws) across their draws or None when not measured)."""
        found = await rerolled(branch, step, before, sampling)
        if not found:
            return ok, set(), None
        at, rolled = found[0]
        later = set().union(*(r for _, r in found[1:])) - rolled
        every = rolled | later
        odds = max(chance.get(r, 0.0) for r in every)
        if odds == 0:
            # The re-rolled steps' own draws repaired nothing: a re-roll is not what
            # repairs, the one draw stands (no extra call).
            return ok, every, None
        key = json.dumps(
            [id(branch.app), sorted(rolled), sorted(later), at.values], sort_keys=True, default=str
        )
        if key not in measured:
            measured[key] = await _rate(
                runner, ex, ok, branch, at, rolled, later, base, draw_base, tick
            )
        wins, draws = measured[key]
        return wins / draws - odds >= MARGIN, every, (wins, draws)

    out = list(trials)
    for step in order:
        here = [i for i, t in enumerate(out) if t.step == step and t.repaired]
        for i in here:
            draws_of = (resamples or {}).get(i)
            if out[i].kind == Kind.RESAMPLE and draws_of is not None:
                # A resample's draws redraw the step, and with it everything downstream whose
                # input changed: each repaired draw is a trial of its own, kept or not.
                kept, every = 0, set()
                for ok, run in draws_of:
                    if ok:
                        held, rolled, _ = await holds(ok, run, step)
                        kept += held
                        every |= rolled
                if not every:  # no repaired draw re-rolled a sampling step: as it was
                    continue
                n = len(draws_of)
                out[i] = out[i].model_copy(
                    update={
                        "repaired": 2 * kept >= n and kept > 0,
                        "repairs": kept,
                        "rerolled": sorted(every),
                    }
                )
                continue
            branch = branches.get(i)
            if branch is None:
                continue
            held, rolled, rate = await holds(True, branch, step)
            if not rolled:
                continue
            update: dict[str, Any] = {"rerolled": sorted(rolled)}
            if rate is not None:
                update.update(repaired=held, repairs=rate[0], tries=rate[1])
            out[i] = out[i].model_copy(update=update)
        if any(out[i].repaired for i in here):
            break
    return out

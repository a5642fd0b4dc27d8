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

A step fanned out with `Send` (several tasks of one name) is re-rolled when its instances'
results differ from the recorded ones as a set, and its draws redraw every instance.

When the re-rolled steps span several supersteps, only the earliest superstep's are redrawn;
later ones are drawn at their recorded index, with whatever input the redraw gives them.
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
) -> tuple[StateSnapshot, set[str]] | None:
    """The earliest superstep after `step` in the trial's run with sampling steps whose output
    differs from the recorded run (its checkpoint and those steps), or None."""
    for snap in await _downstream(branch, step):
        rolled = {
            name
            for name in {t.name for t in snap.tasks if t.result is not None}
            if name in sampling
            and name != step
            and _results(snap, name) != _results(before.get(name), name)
        }
        if rolled:
            return snap, rolled
    return None


async def _rate(
    runner: Runner,
    ex: Example,
    trial: Trial,
    branch: Branch,
    at: StateSnapshot,
    rolled: set[str],
    base: float,
    draw_base: int,
    tick: Callable[[], None] | None,
) -> tuple[int, int]:
    """(repairs, draws) of the trial across the draws of `rolled` (its own run is draw 0)."""
    draws = max(runner.draws or 1, 1)
    wins = int(trial.repaired)
    thread: dict[str, Any] = {
        "configurable": {"thread_id": branch.end["configurable"]["thread_id"]}
    }
    for d in range(1, draws):
        if tick is not None:
            tick()
        start = await fork.alone(branch.app, at, rolled)
        token = SAMPLE.set(draw_base + d)
        try:
            await runner._run(branch.app, None, start, interrupt_after=sorted(rolled))
        finally:
            SAMPLE.reset(token)
        await runner._run(branch.app, None, thread)
        score = runner._score(ex, (await branch.app.aget_state(thread)).values)
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
) -> list[Trial]:
    """`trials` with every repair of the earliest repaired steps that re-rolled a downstream
    sampling step measured across that step's draws (see the module doc); `branches` maps a
    trial's index to its run; `tick` is asked before every extra draw (a run's wall clock)."""
    chance = {
        t.step: t.repairs / t.tries for t in trials if t.kind == Kind.RESAMPLE and t.tries > 0
    }
    out = list(trials)
    for step in order:
        here = [i for i, t in enumerate(out) if t.step == step and t.repaired]
        for i in here:
            branch = branches.get(i)
            if branch is None:
                continue
            found = await rerolled(branch, step, before, sampling)
            if found is None:
                continue
            at, rolled = found
            odds = max(chance.get(r, 0.0) for r in rolled)
            if odds == 0:
                # The re-rolled steps' own draws repaired nothing: a re-roll is not what
                # repairs, the one draw stands (no extra call).
                out[i] = out[i].model_copy(update={"rerolled": sorted(rolled)})
                continue
            wins, draws = await _rate(runner, ex, out[i], branch, at, rolled, base, draw_base, tick)
            out[i] = out[i].model_copy(
                update={
                    "repaired": wins / draws - odds >= MARGIN,
                    "repairs": wins,
                    "tries": draws,
                    "rerolled": sorted(rolled),
                }
            )
        if any(out[i].repaired for i in here):
            break
    return out

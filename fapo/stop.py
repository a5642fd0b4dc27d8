"""When the loop stops: small conditions behind one `StopCondition` protocol, composed by
`AnyOf` (the first that fires wins, in order), like GEPA's CompositeStopper.

Each condition is asked twice per round: before attribution (`state.attribution is None`) and
after it. The built-in ones answer in one of the two phases only, so a resumed run asks the
same questions at the same points and reaches the same stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fapo.budget import Budget
from fapo.records import (
    Attribution,
    DecisionRecord,
    Level,
    ProposalFailure,
    ProposalRecord,
    Stop,
    StopKind,
)


@dataclass
class LoopState:
    """What a stop condition may look at (read it, do not change it)."""

    incumbent: str
    incumbent_val: float
    proposed: int = 0  # candidates proposed so far
    accepted: list[str] = field(default_factory=list)
    fresh: bool = True  # the next candidate has not been proposed in an earlier session
    attribution: Attribution | None = None  # the incumbent's, once attributed this round
    levels_exhausted: str | None = None  # the escalation policy's reason, once it gave up
    # Levels whose proposal found no move that gains on train over the current incumbent, with
    # the proposal's account (reset by an acceptance); and what interventions saw of the failures.
    barren: dict[str, str] = field(default_factory=dict)
    unrepaired: tuple[int, int] = (0, 0)  # (probed failures no intervention repaired, probed)


def note_proposal(
    state: LoopState, level: Level, prop: ProposalRecord, decision: DecisionRecord
) -> None:
    """Keep the evidence `NothingHelps` reads: called by the loop after every decision, while
    `state.attribution` is still the round's (a resumed run replays the same records)."""
    if decision.accepted:
        state.barren = {}
        return
    if prop.failure_kind is ProposalFailure.NO_IMPROVEMENT:
        state.barren[level] = prop.failure or ""
    seen = state.attribution.interventions if state.attribution else None
    if seen is not None and seen.verdicts:
        state.unrepaired = (seen.unrepaired, len(seen.verdicts))


@runtime_checkable
class StopCondition(Protocol):
    def __call__(self, state: LoopState) -> Stop | None: ...


@dataclass(frozen=True)
class LevelsExhausted:
    """The escalation policy has no level left."""

    def __call__(self, state: LoopState) -> Stop | None:
        if state.levels_exhausted is None:
            return None
        return Stop(kind=StopKind.LEVELS_EXHAUSTED, message=state.levels_exhausted)


@dataclass(frozen=True)
class NothingHelps:
    """Every permitted level's proposal found no move that gains on train over the current
    incumbent (the built-in agent's gated moves: none repaired any sampled failure): no change
    the agent can make helps, so stop with that reason rather than "levels exhausted"."""

    levels: tuple[Level, ...]

    def __call__(self, state: LoopState) -> Stop | None:
        if state.attribution is not None or not self.levels:
            return None
        if any(level not in state.barren for level in self.levels):
            return None
        none, probed = state.unrepaired
        why = "; ".join(f"{lv}: {state.barren[lv]}" for lv in self.levels)
        seen = (
            f"; no intervention repaired any of the {probed} probed failures"
            if probed and none == probed
            else ""
        )
        return Stop(
            kind=StopKind.NO_HELP,
            message="nothing can help: no move at any permitted level gains on train"
            f"{seen} (label noise or a target the chain cannot reach?) — {why}",
        )


@dataclass(frozen=True)
class TargetReached:
    """The incumbent's val score reached the tenant's `target_score`."""

    target: float | None

    def __call__(self, state: LoopState) -> Stop | None:
        if self.target is None or state.attribution is not None:
            return None
        if state.incumbent_val < self.target:
            return None
        return Stop(
            kind=StopKind.TARGET_REACHED, message=f"target score {self.target} reached on val"
        )


@dataclass(frozen=True)
class BudgetSpent:
    """A budget limit is reached. Asked only before a candidate not yet proposed, so a resumed
    run replays every recorded candidate whatever the clock says now."""

    budget: Budget

    def __call__(self, state: LoopState) -> Stop | None:
        if state.attribution is not None or not state.fresh:
            return None
        reason = self.budget.exhausted()  # progress: the budget's own clock
        return Stop(kind=StopKind.BUDGET, message=reason) if reason else None


@dataclass(frozen=True)
class NoFailuresLeft:
    """The incumbent fails no train example: nothing to attribute, nothing to fix."""

    def __call__(self, state: LoopState) -> Stop | None:
        if state.attribution is None or state.attribution.clusters:
            return None
        return Stop(kind=StopKind.NO_FAILURES, message="no failures left on train")


@dataclass(frozen=True)
class AnyOf:
    """Stop when any condition fires; the first one (in order) gives the reason."""

    conditions: Sequence[StopCondition]

    def __call__(self, state: LoopState) -> Stop | None:
        for cond in self.conditions:
            stop = cond(state)
            if stop is not None:
                return stop
        return None


def default_stop(
    target: float | None, budget: Budget, *extra: StopCondition, levels: Sequence[Level] = ()
) -> AnyOf:
    """The built-in conditions, then the caller's. `levels`: the permitted ones (NothingHelps)."""
    return AnyOf(
        (
            NothingHelps(tuple(levels)),
            LevelsExhausted(),
            TargetReached(target),
            BudgetSpent(budget),
            NoFailuresLeft(),
            *extra,
        )
    )

"""Escalation: which level the next proposal works at. Least invasive first; move up after
`patience` consecutive rejections, or at once when the dominant failure cluster belongs to a
higher permitted level with high confidence; after a structural acceptance, back to the bottom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fapo.records import Attribution, DecisionRecord, Level
from fapo.spec import EscalationSpec


@dataclass(frozen=True)
class LevelState:
    level: Level
    rejections: int = 0  # consecutive, at this level
    exhausted: tuple[Level, ...] = ()
    jumped: bool = False  # escalated at once since the last decision (one level per decision)


class EscalationPolicy(Protocol):
    """Which level the next proposal works at. `before_proposal` sees the incumbent's attribution
    (a reason string means the level moved); `after_decision` returns None to stop the run."""

    def before_proposal(
        self, state: LevelState, attribution: Attribution
    ) -> tuple[LevelState, str | None]: ...

    def after_decision(
        self, state: LevelState, decision: DecisionRecord, level_exhausted: bool = False
    ) -> tuple[LevelState | None, str]: ...


@dataclass(frozen=True)
class LadderPolicy:
    levels: tuple[Level, ...]
    spec: EscalationSpec

    def _above(self, level: Level) -> list[Level]:
        return list(self.levels[self.levels.index(level) + 1 :])

    def before_proposal(
        self, state: LevelState, attribution: Attribution
    ) -> tuple[LevelState, str | None]:
        """Move up one level at once if the dominant cluster is confidently a higher level.

        One level per decision: the level in between gets a proposal before the next jump, so a
        cheaper fix is never skipped just because a bigger cluster sits higher up."""
        dominant = attribution.dominant
        if dominant is None or state.jumped:
            return state, None
        target = dominant.level
        above = [lv for lv in self._above(state.level) if lv not in state.exhausted]
        if target in above and dominant.confidence >= self.spec.high_confidence:
            nxt = above[0]
            why = (
                f"the dominant failure ({dominant.step}: {dominant.cause}, "
                f"{len(dominant.example_ids)} examples) needs the {target} level "
                f"(confidence {dominant.confidence:.2f}); moving one level up"
            )
            return LevelState(nxt, 0, state.exhausted, jumped=True), why
        return state, None

    def after_decision(
        self, state: LevelState, decision: DecisionRecord, level_exhausted: bool = False
    ) -> tuple[LevelState | None, str]:
        """Next state, or None when every permitted level is exhausted."""
        if decision.accepted:
            if state.level in ("structure", "code"):
                return LevelState(
                    self.levels[0], 0, ()
                ), f"structural change accepted: back to {self.levels[0]} level"
            # A new incumbent re-opens every level: what failed before may work on top of it.
            return LevelState(state.level, 0, ()), "accepted: stay at this level"
        rejections = state.rejections + 1
        if not level_exhausted and rejections < self.spec.patience:
            return LevelState(
                state.level, rejections, state.exhausted
            ), f"{rejections} consecutive rejection(s) at {state.level} level"
        exhausted = (*state.exhausted, state.level)
        why = "nothing left to try" if level_exhausted else f"{rejections} rejections"
        for nxt in self._above(state.level):
            if nxt not in exhausted:
                return LevelState(nxt, 0, exhausted), f"{why} at {state.level} level: up to {nxt}"
        # Jumped past a level (high-confidence escalation)? Go back to what was never exhausted.
        for nxt in self.levels:
            if nxt not in exhausted:
                return LevelState(
                    nxt, 0, exhausted
                ), f"{why} at {state.level} level: back to the untried {nxt} level"
        return None, "every permitted level is exhausted"

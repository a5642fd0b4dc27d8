"""Escalation: which level the next proposal works at. Least invasive first; move up after
`patience` consecutive rejections, or at once when the dominant failure cluster belongs to a
higher permitted level with high confidence; after a structural acceptance, back to the bottom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fapo.spec import EscalationSpec, Level


@dataclass(frozen=True)
class LevelState:
    level: Level
    rejections: int = 0  # consecutive, at this level
    exhausted: tuple[Level, ...] = ()


class EscalationPolicy(Protocol):
    def before_proposal(self, state: LevelState, dominant: dict[str, Any] | None
                        ) -> tuple[LevelState, str | None]: ...

    def after_decision(self, state: LevelState, accepted: bool,
                       level_exhausted: bool = False) -> tuple[LevelState | None, str]: ...


@dataclass(frozen=True)
class LadderPolicy:
    levels: tuple[Level, ...]
    spec: EscalationSpec

    def _above(self, level: Level) -> list[Level]:
        return list(self.levels[self.levels.index(level) + 1:])

    def before_proposal(self, state: LevelState, dominant: dict[str, Any] | None
                        ) -> tuple[LevelState, str | None]:
        """Jump up at once if the dominant cluster is confidently a higher permitted level."""
        if not dominant:
            return state, None
        target = dominant["level"]
        if (target in self._above(state.level) and target not in state.exhausted
                and dominant["confidence"] >= self.spec.high_confidence):
            why = (f"dominant cluster ({dominant['step']}: {dominant['cause']}, "
                   f"{len(dominant['example_ids'])} examples) is {target}-level with "
                   f"confidence {dominant['confidence']:.2f}")
            return LevelState(target, 0, state.exhausted), why
        return state, None

    def after_decision(self, state: LevelState, accepted: bool,
                       level_exhausted: bool = False) -> tuple[LevelState | None, str]:
        """Next state, or None when every permitted level is exhausted."""
        if accepted:
            if state.level == "structure":
                return LevelState(self.levels[0], 0, ()), "structural change accepted: back to " \
                                                          f"{self.levels[0]} level"
            return LevelState(state.level, 0, state.exhausted), "accepted: stay at this level"
        rejections = state.rejections + 1
        if not level_exhausted and rejections < self.spec.patience:
            return LevelState(state.level, rejections, state.exhausted), \
                f"{rejections} consecutive rejection(s) at {state.level} level"
        exhausted = (*state.exhausted, state.level)
        for nxt in self._above(state.level):
            if nxt not in exhausted:
                why = "nothing left to try" if level_exhausted else f"{rejections} rejections"
                return LevelState(nxt, 0, exhausted), f"{why} at {state.level} level: up to {nxt}"
        return None, "every permitted level is exhausted"

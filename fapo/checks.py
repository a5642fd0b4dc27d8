"""Tenant step checks: functions that may read the gold label and say whether a step did its job.

    from fapo import check

    @check("retrieve", cause="gold passage not retrieved", level="parameter", confidence=0.9)
    def gold_retrieved(example, state) -> bool: ...

`state` is the graph state right after the step ran. A check may also return a `CheckFailure` to refine
cause/level/confidence for one example (e.g. "unreachable from the question" -> structure).

An optional oracle gives attribution's interventions the correct output of a step for one example:

    from fapo import oracle

    @oracle("retrieve")
    def gold_passages(example, state) -> dict | None: ...

`state` is the graph state right before the step runs; the returned dict is injected as the step's
state update (written by `fapo.fork.with_update` as that step's own write in its superstep) and
the graph runs on from there. None = no opinion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_LEVELS = ("prompt", "parameter", "structure")


@dataclass(frozen=True)
class CheckFailure:
    cause: str
    level: str = "parameter"
    confidence: float = 0.9


@dataclass(frozen=True)
class StepCheck:
    step: str
    cause: str
    level: str
    confidence: float
    fn: Callable[..., Any]

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "check")

    def run(self, example: Any, state: dict[str, Any]) -> CheckFailure | None:
        """None if the step passed this check, else why it failed."""
        out = self.fn(example, state)
        if isinstance(out, CheckFailure):
            return out
        if out is True or out is None:
            return None
        return CheckFailure(self.cause, self.level, self.confidence)


def check(step: str, *, cause: str, level: str = "parameter", confidence: float = 0.9):
    """Mark a function in checks.py as a step check (collected by `collect`)."""
    if level not in _LEVELS:
        raise ValueError(f"check level must be one of {_LEVELS}, not {level!r}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__fapo_check__ = StepCheck(step, cause, level, confidence, fn)  # type: ignore[attr-defined]
        return fn

    return deco


def collect(module: Any) -> list[StepCheck]:
    """Every decorated check of a loaded checks module, in definition order."""
    found = [v.__fapo_check__ for v in vars(module).values() if hasattr(v, "__fapo_check__")]
    return found


@dataclass(frozen=True)
class StepOracle:
    step: str
    fn: Callable[..., Any]

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "oracle")

    def run(self, example: Any, state: dict[str, Any]) -> dict[str, Any] | None:
        """The correct state update of the step for `example`, or None when the oracle cannot say."""
        out = self.fn(example, dict(state))
        if out is None:
            return None
        if not isinstance(out, dict):
            raise TypeError(f"oracle {self.name} returned {type(out).__name__}, not a dict or None")
        return out


def oracle(step: str):
    """Mark a function in checks.py as the oracle of `step` (collected by `collect_oracles`)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__fapo_oracle__ = StepOracle(step, fn)  # type: ignore[attr-defined]
        return fn

    return deco


def collect_oracles(module: Any) -> dict[str, StepOracle]:
    """The oracle of each step in a loaded checks module (the last definition wins)."""
    return {
        v.__fapo_oracle__.step: v.__fapo_oracle__
        for v in vars(module).values()
        if hasattr(v, "__fapo_oracle__")
    }

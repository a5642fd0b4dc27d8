"""Budgets that mean what they say: variants, task-model calls, tokens, USD, wall-clock.
`Budget.exhausted()` names the first limit reached; the loop then stops cleanly. The wall clock
is also asked inside stages (`check_clock`, after every finished example and scored move), so a
long evaluation or proposal stops within one example of the limit instead of at its end."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fapo.errors import BudgetExhausted
from fapo.events import EventLog
from fapo.meter import Meter
from fapo.records import StopKind, StopRecord
from fapo.spec import BudgetSpec

Clock = Callable[[], float]


@dataclass
class Budget:
    spec: BudgetSpec
    meter: Meter
    variants: int = 0
    elapsed_before_s: float = 0.0  # wall-clock spent by earlier sessions of a resumed run
    started: float = 0.0
    #: where "now" comes from; tests inject a fake clock with `use_clock` (no timing in tests)
    clock: Clock = field(default=time.time, repr=False)
    #: False once the run only finishes (the sealed test split after a stop is always evaluated)
    clock_stops: bool = True

    def use_clock(self, clock: Clock) -> None:
        """Measure wall-clock time with `clock` from now on (the session restarts at its now)."""
        self.clock, self.started = clock, clock()

    def now(self) -> float:
        return self.clock()

    def elapsed_s(self, now: float | None = None) -> float:
        return self.elapsed_before_s + ((self.clock() if now is None else now) - self.started)

    def _clock_spent(self, now: float | None) -> str | None:
        m = self.spec.max_minutes
        if m is not None and self.elapsed_s(now) >= m * 60:
            return f"wall-clock budget spent ({m:g} min)"
        return None

    def exhausted(self, now: float | None = None) -> str | None:
        s = self.spec
        if self.variants >= s.max_variants:
            return f"variant budget spent ({s.max_variants} candidates)"
        if s.max_calls is not None and self.meter.calls >= s.max_calls:
            return f"task-model call budget spent ({self.meter.calls}/{s.max_calls})"
        tokens = self.meter.input_tokens + self.meter.output_tokens
        if s.max_tokens is not None and tokens >= s.max_tokens:
            return f"token budget spent ({tokens}/{s.max_tokens})"
        if s.max_usd is not None and self.usd >= s.max_usd:
            return f"USD budget spent (${self.usd:.4f}/${s.max_usd:g})"
        return self._clock_spent(now)

    def check_clock(self) -> None:
        """Raise BudgetExhausted once the wall-clock budget is spent. Asked inside stages: with a
        local model at ~1 s a call, one proposal of the built-in agent ran > 17 minutes (650
        calls) while the budget was asked only between stages. The stage is then not recorded;
        its finished examples are in the call cache, so a resume pays for none of them again."""
        if self.clock_stops and (reason := self._clock_spent(None)):
            raise BudgetExhausted(reason)

    @property
    def agent_usd(self) -> float:
        """Agent spend lives on the meter, so a task-model call is refused once the USD budget
        is spent by both together (the meter checks before every call)."""
        return self.meter.extra_usd

    @agent_usd.setter
    def agent_usd(self, value: float) -> None:
        self.meter.extra_usd = value

    @property
    def usd(self) -> float:
        return self.meter.cost_usd + self.agent_usd

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        return {
            **self.meter.snapshot(),
            "variants": self.variants,
            "agent_usd": round(self.agent_usd, 6),
            "usd": round(self.usd, 6),
            "elapsed_s": round(self.elapsed_s(now), 3),
        }

    def restore(self, snap: dict[str, Any]) -> None:
        m = self.meter
        m.calls, m.cache_hits = snap["calls"], snap["cache_hits"]
        m.failed_calls = snap.get("failed_calls", 0)  # absent in runs before issue 14
        m.input_tokens, m.output_tokens = snap["input_tokens"], snap["output_tokens"]
        m.cost_usd = snap["cost_usd"]
        self.variants, self.agent_usd = snap["variants"], snap["agent_usd"]
        self.elapsed_before_s = snap["elapsed_s"]


def stop_key(log: EventLog, made: StopRecord) -> str:
    """The event key under which this session's stop is recorded (`stopped` events).

    A resumed run replays the stop it recorded, so it ends where it ended before, with one
    exception: a budget stop is superseded when the run, resumed with a raised budget, now ends
    elsewhere (another kind, or another best variant; a new key, so no key is written twice)."""
    stops = [e for e in log.events if e["kind"] == "stopped"]
    if not stops:
        return "run"
    last = StopRecord.model_validate(stops[-1]["data"])
    same = (last.kind, last.best, last.accepted) == (made.kind, made.best, made.accepted)
    if last.kind is StopKind.BUDGET and not same:
        return f"run.{len(stops) + 1}"
    return str(stops[-1]["key"])

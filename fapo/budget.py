"""Budgets that mean what they say: variants, task-model calls, tokens, USD, wall-clock.
`Budget.exhausted()` names the first limit reached; the loop then stops cleanly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fapo.llm import Meter
from fapo.spec import BudgetSpec


@dataclass
class Budget:
    spec: BudgetSpec
    meter: Meter
    variants: int = 0
    elapsed_before_s: float = 0.0  # wall-clock spent by earlier sessions of a resumed run
    started: float = 0.0

    def elapsed_s(self, now: float) -> float:
        return self.elapsed_before_s + (now - self.started)

    def exhausted(self, now: float) -> str | None:
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
        if s.max_minutes is not None and self.elapsed_s(now) >= s.max_minutes * 60:
            return f"wall-clock budget spent ({s.max_minutes:g} min)"
        return None

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

    def snapshot(self, now: float) -> dict[str, Any]:
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

"""Run-wide counters of task-model spend, their hard limits, and provider health (outages)."""

from __future__ import annotations

import threading
from typing import Any

from fapo.call_errors import CallErrorKind, ModelCallError
from fapo.errors import BudgetExhausted, ProviderOutage


class Meter:
    """Run-wide counters of task-model spend, with optional hard limits checked before every HTTP
    attempt. `calls` counts attempts (retries and failures included): what the server received."""

    def __init__(
        self,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_usd: float | None = None,
    ) -> None:
        self.calls = self.cache_hits = self.input_tokens = self.output_tokens = 0
        self.failed_calls = 0  # attempts that did not yield an answer (included in `calls`)
        self.errors: dict[str, int] = {}  # failed attempts by CallErrorKind
        self.cost_usd = 0.0
        self.max_calls, self.max_tokens, self.max_usd = max_calls, max_tokens, max_usd
        self.extra_usd = 0.0  # spend outside the task model (agents) counted against max_usd
        self.outage: ProviderOutage | None = None
        self._streak: dict[str, tuple[int, str]] = {}  # endpoint -> (infra failures in a row, last)
        self._lock = threading.Lock()

    def admit(self) -> None:
        """Reserve one HTTP attempt or raise BudgetExhausted / the recorded ProviderOutage.

        Reserving under the lock (not check-then-count) keeps concurrent examples from all
        passing the check at `max_calls - 1`: the call budget holds exactly at the server."""
        with self._lock:
            if self.outage is not None:
                raise self.outage
            if self.max_calls is not None and self.calls >= self.max_calls:
                raise BudgetExhausted(f"task-model call budget spent ({self.max_calls} calls)")
            # Tokens and USD are known only after an answer: up to `concurrency` attempts in
            # flight may pass these checks together (documented overshoot).
            if (
                self.max_tokens is not None
                and self.input_tokens + self.output_tokens >= self.max_tokens
            ):
                raise BudgetExhausted(f"token budget spent ({self.max_tokens} tokens)")
            if self.max_usd is not None and self.cost_usd + self.extra_usd >= self.max_usd:
                raise BudgetExhausted(f"USD budget spent (${self.max_usd:g})")
            self.calls += 1

    def settle(self, *, tin: int, tout: int, usd: float, failure: CallErrorKind | None) -> None:
        """Account one admitted attempt's outcome."""
        with self._lock:
            self.input_tokens += tin
            self.output_tokens += tout
            self.cost_usd += usd
            if failure is not None:
                self.failed_calls += 1
                self.errors[failure.value] = self.errors.get(failure.value, 0) + 1

    def hit(self) -> None:
        with self._lock:
            self.cache_hits += 1

    def add(self, *, hit: bool, tin: int, tout: int, usd: float) -> None:
        """One answered call in a single step (kept for callers outside the attempt loop)."""
        if hit:
            self.hit()
            return
        with self._lock:
            self.calls += 1
        self.settle(tin=tin, tout=tout, usd=usd, failure=None)

    def absorb(self, other: Meter) -> None:
        """Charge another meter's spend to this one: interventions keep their own meter (their
        cap, reported apart) but the run's budgets cover what they cost too."""
        with self._lock:
            self.calls += other.calls
            self.failed_calls += other.failed_calls
            self.cache_hits += other.cache_hits
            self.input_tokens += other.input_tokens
            self.output_tokens += other.output_tokens
            self.cost_usd += other.cost_usd
            for kind, n in other.errors.items():
                self.errors[kind] = self.errors.get(kind, 0) + n

    def call_done(self, endpoint: str, error: ModelCallError | None, limit: int) -> None:
        """Provider health: after `limit` calls in a row to `endpoint` failed for infrastructure
        reasons (after their retries), record and raise ProviderOutage; any answer resets it."""
        with self._lock:
            if error is None or not error.infrastructure:
                self._streak.pop(endpoint, None)
                return
            n = self._streak.get(endpoint, (0, ""))[0] + 1
            self._streak[endpoint] = (n, str(error))
            if n < limit or self.outage is not None:
                return
            self.outage = ProviderOutage(
                f"provider outage at {endpoint}: {n} model calls in a row failed for "
                f"infrastructure reasons, last: {error}; the run stopped and can be continued "
                "with `fapo run --resume RUN_ID` once the provider answers again"
            )
        raise self.outage

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }

"""What a run tells its observers: typed events, the `Callback` protocol, and the two built-in
observers (the progress printer of `fapo run`, the report writer).

A callback is any callable taking an `Event`; match on the event's type. Every event carries the
budget snapshot at the moment it was sent. Callbacks observe; they never change the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import Field

from fapo.records import DecisionRecord, Level, Record, Status, StopRecord


class Event(Record):
    budget: dict[str, Any] = Field(default_factory=dict)


class RunStarted(Event):
    run_dir: Path
    tenant: str
    agent: str
    model: str


class EvalStarted(Event):
    variant: str
    split: str


class EvalFinished(Event):
    variant: str
    split: str
    mean: float
    replayed: bool


class LevelChanged(Event):
    level: Level
    why: str


class ProposalStarted(Event):
    variant: str
    level: Level
    cause: str | None


class Decided(Event):
    decision: DecisionRecord


class RunFinished(Event):
    run_dir: Path
    stop: StopRecord


class TrialStarted(Event):
    trial: int
    of: int
    run_id: str


class Callback(Protocol):
    def __call__(self, event: Event) -> None: ...


class ProgressPrinter:
    """One line per loop event on stderr: level, variant, best score, budget spent."""

    def __init__(self, quiet: bool = False) -> None:
        import sys

        from rich.console import Console

        self.quiet = quiet
        # Rich assumes 80 columns without a terminal and folds longer lines, which breaks every
        # CI log line naming a file or a cause: no re-wrapping when stderr is not a terminal.
        self.console = Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())
        self.best: float | None = None

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        line = self.line(event)
        if line:
            self.console.print(line)

    def line(self, e: Event) -> str | None:
        """The event as one rich-markup line; every value from the run is escaped, since a cause
        such as `declared format (pattern [a-z_]+)` is data and `[a-z_]` would read as a tag."""
        from rich.markup import escape

        def x(value: object) -> str:
            return escape(str(value))

        b = e.budget
        spend = (
            f"[dim]{b.get('variants', 0)} cand · {b.get('calls', 0)} calls · "
            f"${b.get('usd', 0):.3f}[/dim]"
        )
        if isinstance(e, RunStarted):
            return (
                f"[bold]{x(e.tenant)}[/bold] · agent {x(e.agent)} · task model {x(e.model)}\n"
                f"  run folder: {x(e.run_dir)}"
            )
        if isinstance(e, TrialStarted):
            return f"[bold]trial {e.trial}/{e.of}[/bold]: run {x(e.run_id)}"
        if isinstance(e, EvalFinished):
            if e.split == "val" and (self.best is None or e.variant == "v000"):
                self.best = e.mean
            return f"  eval {x(e.variant)} {x(e.split)}: {e.mean:.3f}  {spend}"
        if isinstance(e, LevelChanged):
            return f"[bold]level → {x(e.level)}[/bold]: {x(e.why)}"
        if isinstance(e, ProposalStarted):
            return f"[cyan]{x(e.variant)}[/cyan] {x(e.level)}: proposing a fix for {x(e.cause)}"
        if isinstance(e, Decided):
            d = e.decision
            color = {Status.ACCEPTED: "green", Status.REJECTED: "yellow"}.get(d.status, "red")
            if d.accepted and d.candidate_val is not None:
                self.best = d.candidate_val
            return (
                f"  [{color}]{x(d.status.value)}[/{color}]: {x(d.reason)}  "
                f"(best val {self.best or 0:.3f})  {spend}"
            )
        if isinstance(e, RunFinished):
            return f"[bold]finished[/bold]: {x(e.stop.reason)}; best {x(e.stop.best)}"
        return None


class ReportWriter:
    """Writes report.md, report.json and report.html when a run finishes."""

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            from fapo.report_html import write_html

            write_html(event.run_dir)

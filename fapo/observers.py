"""What a run tells its observers: typed events, the `Callback` protocol, and the two built-in
observers (the progress printer of `fapo run`, the report writer).

A callback is any callable taking an `Event`; match on the event's type. Every event carries the
budget snapshot at the moment it was sent. Callbacks observe; they never change the run.
Progress inside a stage (`EvalProgress`, `ProposalProgress`) comes from a `Watch`, which the loop
ticks after every finished example or scored move.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


class EvalProgress(Event):
    """Examples finished so far in one evaluation of `fapo run` (each repeat counts)."""

    variant: str
    split: str
    done: int
    total: int
    calls: int  # task-model calls this evaluation issued so far (cache hits are free)
    elapsed_s: float
    eta_s: float | None = None  # estimated seconds left, at the pace so far


class ProposalProgress(Event):
    """Candidate moves scored on train so far in one proposal of the built-in agent."""

    variant: str
    level: Level
    done: int
    total: int | None  # None until the agent says how many it will score
    calls: int
    elapsed_s: float
    eta_s: float | None = None


#: Least seconds between two progress events of one stage at the source (the first, the last and
#: a new total are always sent): the rich bar needs no more, and an event costs a budget snapshot.
EMIT_EVERY_S = 0.25
#: Least seconds of a stage between two plain progress lines (CI logs): a stage shorter than this
#: prints none, a 17-minute proposal about 70.
PLAIN_EVERY_S = 15.0

MakeProgress = Callable[[int, int | None, int, float, float | None], Event]


class Watch:
    """The progress source of one stage. `tick(done, total)` after every finished unit (example,
    scored move) first calls `check` (the wall-clock budget: it raises to stop the stage), then
    sends the event `make(done, total, calls, elapsed_s, eta_s)` builds when one is due."""

    def __init__(
        self,
        make: MakeProgress,
        send: Callable[[Event], None],
        *,
        calls: Callable[[], int],
        check: Callable[[], None] | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.make, self.send, self.calls, self.check, self.clock = make, send, calls, check, clock
        self.every_s = EMIT_EVERY_S if every_s is None else every_s
        self.t0, self.calls0 = clock(), calls()
        self.sent_at: float | None = None
        self.total: int | None = None

    def tick(self, done: int, total: int | None = None) -> None:
        if self.check is not None:
            self.check()
        total = self.total if total is None else total
        now, new_total = self.clock(), total != self.total
        self.total = total
        if not (
            self.sent_at is None or new_total or done == total or now - self.sent_at >= self.every_s
        ):
            return
        self.sent_at, elapsed = now, now - self.t0
        eta = elapsed / done * (total - done) if done and total else None
        self.send(self.make(done, total, self.calls() - self.calls0, elapsed, eta))


class RunProgress:
    """The loop's progress plumbing, so loop.py needs a few lines only: one `Watch` per evaluation
    (`evaluation`), one per proposal (`proposal_started`), fed by the train-score callback
    (`move_scored`) until the agent states its total through `on_scored(done, total)`, and the
    wall-clock check for evaluations that send nothing (`check`)."""

    def __init__(
        self,
        send: Callable[[Event], None],
        *,
        calls: Callable[[], int],
        check: Callable[[], None],
    ) -> None:
        self.send, self.calls, self.check_clock = send, calls, check
        self.moves: Watch | None = None
        self.scored = 0

    def watch(self, make: MakeProgress) -> Watch:
        return Watch(make, self.send, calls=self.calls, check=self.check_clock)

    def evaluation(self, variant: str, split: str) -> Watch:
        def make(done: int, total: int | None, calls: int, el: float, eta: float | None) -> Event:
            return EvalProgress(
                variant=variant,
                split=split,
                done=done,
                total=total or 0,
                calls=calls,
                elapsed_s=round(el, 3),
                eta_s=None if eta is None else round(eta, 1),
            )

        return self.watch(make)

    def proposal_started(self, e: ProposalStarted) -> None:
        def make(done: int, total: int | None, calls: int, el: float, eta: float | None) -> Event:
            return ProposalProgress(
                variant=e.variant,
                level=e.level,
                done=done,
                total=total,
                calls=calls,
                elapsed_s=round(el, 3),
                eta_s=None if eta is None else round(eta, 1),
            )

        self.moves, self.scored = self.watch(make), 0

    def move_scored(self) -> None:
        """One train evaluation of a move finished (the train-score callback)."""
        self.scored += 1
        if self.moves is not None and self.moves.total is None:  # until the agent's own count
            self.moves.tick(self.scored)

    def on_scored(self, done: int, total: int) -> None:
        """The agent's count: `done` of `total` move evaluations scored."""
        if self.moves is not None:
            self.moves.tick(done, total)

    def check(self, done: int = 0, total: int = 0) -> None:
        """`on_progress` of evaluations that send nothing: the wall clock only."""
        self.check_clock()


def duration(seconds: float) -> str:
    """`42s`, `3m07s`, `1h02m`: short enough for a progress line."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Callback(Protocol):
    def __call__(self, event: Event) -> None: ...


class ProgressPrinter:
    """One line per loop event on stderr (level, variant, best score, budget spent), and progress
    inside evaluations and proposals: a live bar when the console is a terminal, else a plain
    line at most every `every_s` seconds of a stage (so CI logs get no line per example)."""

    def __init__(
        self,
        quiet: bool = False,
        *,
        console: Any = None,
        every_s: float = PLAIN_EVERY_S,
    ) -> None:
        import sys

        from rich.console import Console

        self.quiet = quiet
        # Rich assumes 80 columns without a terminal and folds longer lines, which breaks every
        # CI log line naming a file or a cause: no re-wrapping when stderr is not a terminal.
        self.console = console or Console(
            stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty()
        )
        self.live = bool(self.console.is_terminal)
        self.every_s = every_s
        self.best: float | None = None
        self._printed: dict[tuple[str, ...], float] = {}  # stage -> elapsed_s of its last line
        self._bar: Any = None  # rich Progress while a stage shows one
        self._task: Any = None
        self._stage: tuple[str, ...] | None = None

    def __call__(self, event: Event) -> None:
        if self.quiet:
            return
        if isinstance(event, EvalProgress | ProposalProgress):
            self.progress(event)
            return
        self._end_bar()
        line = self.line(event)
        if line:
            self.console.print(line)

    # -- progress inside a stage -------------------------------------------------------------
    @staticmethod
    def _stage_of(e: EvalProgress | ProposalProgress) -> tuple[str, ...]:
        if isinstance(e, EvalProgress):
            return ("eval", e.variant, e.split)
        return ("proposal", e.variant, str(e.level))

    def progress(self, e: EvalProgress | ProposalProgress) -> None:
        if self.live:
            self._draw(e)
            return
        stage = self._stage_of(e)
        if e.elapsed_s - self._printed.get(stage, 0.0) < self.every_s:
            return
        self._printed[stage] = e.elapsed_s
        self.console.print(self.progress_line(e))

    def progress_line(self, e: EvalProgress | ProposalProgress) -> str:
        """The plain line: `  v002 parameter: 5/17 moves scored · 212 calls · 3m12s elapsed ·
        ~7m40s left` (escaped: variant and level are data)."""
        from rich.markup import escape

        if isinstance(e, EvalProgress):
            what = f"{escape(e.variant)} {escape(e.split)}: {e.done}/{e.total} examples"
            what += f" ({100 * e.done // max(e.total, 1)}%)"
        else:
            of = f"/{e.total}" if e.total is not None else ""
            noun = "move" if (e.total or e.done) == 1 else "moves"
            what = f"{escape(e.variant)} {escape(str(e.level))}: {e.done}{of} {noun} scored"
        left = f" · ~{duration(e.eta_s)} left" if e.eta_s is not None and e.done != e.total else ""
        return f"  {what} · {e.calls} calls · {duration(e.elapsed_s)} elapsed{left}"

    def _draw(self, e: EvalProgress | ProposalProgress) -> None:
        from rich.markup import escape
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "{task.fields[unit]} · {task.fields[calls]} calls · {task.fields[time]}"
                ),
                console=self.console,
                transient=True,
                redirect_stdout=False,  # an error line must reach the real stderr, whatever
                redirect_stderr=False,  # state the run ends in
                auto_refresh=False,  # redrawn per event; events come at most every EMIT_EVERY_S
            )
            self._bar.start()
        stage = self._stage_of(e)
        if stage != self._stage:
            if self._task is not None:
                self._bar.remove_task(self._task)
            desc = f"{escape(stage[1])} {escape(stage[2])}"
            task = self._bar.add_task(desc, total=None, unit="", calls=0, time="")
            self._task, self._stage = task, stage
        unit = "examples" if isinstance(e, EvalProgress) else "moves scored"
        left = f", ~{duration(e.eta_s)} left" if e.eta_s is not None else ""
        self._bar.update(
            self._task,
            completed=e.done,
            total=e.total,
            unit=unit,
            calls=e.calls,
            time=f"{duration(e.elapsed_s)}{left}",
        )
        self._bar.refresh()

    def close(self) -> None:
        """Take the live bar off the terminal (the run ended, however it ended)."""
        self._end_bar()

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        self._bar = self._task = self._stage = None

    # -- one line per loop event -------------------------------------------------------------
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

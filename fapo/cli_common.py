"""Helpers both CLI modules share (output, settings, run lookup, progress); imports neither of them.

Only typer and the standard library at module level, so `fapo --help` stays fast: rich, pydantic
settings and everything heavy are imported inside the helper that needs them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from fapo.errors import FapoError

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
RunArg = Annotated[
    str | None, typer.Argument(help="Run id or run folder (default: the latest run).")
]


def project_settings() -> Any:
    """The project's settings (fapo.toml found from the working directory)."""
    from fapo.settings import load_settings

    return load_settings()


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """`data` as JSON on stdout with --json, else `text` (if any) as one block."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif text is not None:
        sys.stdout.write(text.rstrip("\n") + "\n")


def find_run(settings: Any, run_ref: str | None) -> Path:
    """A run folder from a folder path, a run id, or (None) the most recently touched run."""
    runs = sorted(settings.runs_dir.glob("*/*/run.json"), key=lambda p: p.stat().st_mtime)
    if run_ref:
        p = Path(run_ref)
        if (p / "run.json").is_file():
            return p
        runs = [r for r in runs if r.parent.name == run_ref]
    if not runs:
        raise FapoError(
            f"no run {'named ' + repr(run_ref) + ' ' if run_ref else ''}under "
            f"{settings.runs_dir}; start one with `fapo run TENANT`"
        )
    return runs[-1].parent


def progress_bar(description: str, enabled: bool) -> tuple[Any, Callable[[int, int], None] | None]:
    """A rich progress bar on stderr (or a no-op) returning (context manager, callback)."""
    import contextlib

    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    prog = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    # The description holds a tenant name: data, never markup.
    task = prog.add_task(escape(description), total=None)
    return prog, lambda done, total: prog.update(task, completed=done, total=total)


def live_printer(as_json: bool) -> Any:
    """The progress printer of `fapo run` (one escaped, unwrapped line per loop event)."""
    from fapo.observers import ProgressPrinter

    return ProgressPrinter(quiet=as_json)


def report_paths(run_dir: Path) -> dict[str, str]:
    """The reports a run folder holds: report.md always, report.html when it was rendered."""
    out = {}
    for kind, name in (("markdown", "report.md"), ("html", "report.html")):
        if (run_dir / name).is_file():
            out[kind] = str(run_dir / name)
    return out


def report_lines(run_dir: Path) -> str:
    """Where to read a run's results, the HTML report first (it is the one to open)."""
    paths = report_paths(run_dir)
    lines = []
    if "html" in paths:
        lines.append(f"report: {paths['html']} (open in a browser; self-contained)")
    if "markdown" in paths:
        lines.append(f"{'markdown' if lines else 'report'}: {paths['markdown']}")
    if "html" not in paths:
        lines.append(f"html report: `fapo report {run_dir} --html` writes it")
    return "\n".join(lines)

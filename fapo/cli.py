"""The `fapo` command: a thin layer over the library. Heavy imports happen inside commands, so
`fapo --help` never loads langgraph or a model SDK."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fapo.errors import FapoError

app = typer.Typer(
    name="fapo",
    help="Optimize multi-step LLM pipelines: evaluate, attribute, propose, review, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]


def _settings():
    from fapo.settings import load_settings

    return load_settings()


def _emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif text is not None:
        sys.stdout.write(text.rstrip("\n") + "\n")


@app.command()
def schema() -> None:
    """Print the JSON Schema of tenant.yaml (for editor completion)."""
    from fapo.spec import TenantSpec

    _emit(TenantSpec.model_json_schema(), True)


@app.command()
def validate(tenant: str, as_json: JsonOpt = False) -> None:
    """Check a tenant without calling any model; exit 2 on the first kind of problem found."""
    from fapo.validate import validate as run_validate

    t, problems, warnings = run_validate(tenant, _settings())
    ok = not problems
    if as_json:
        _emit({"tenant": tenant, "ok": ok, "problems": problems, "warnings": warnings}, True)
    else:
        for w in warnings:
            sys.stderr.write(f"warning: {w}\n")
        for p in problems:
            sys.stderr.write(f"error: {p}\n")
        if ok:
            sys.stdout.write(f"{t.name}: valid ({len(t.prompts)} prompts, "
                             f"{len(t.spec.params)} params, scope {', '.join(t.spec.scope)})\n")
    if not ok:
        raise typer.Exit(2)


def progress_bar(description: str, enabled: bool):
    """A rich progress bar on stderr (or a no-op) returning (context manager, callback)."""
    import contextlib

    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    prog = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = prog.add_task(description, total=None)
    return prog, lambda done, total: prog.update(task, completed=done, total=total)


@app.command("eval")
def eval_cmd(
    tenant: str,
    split: Annotated[str, typer.Option(help="train, val or test")] = "val",
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Examples evaluated at once.")] = None,
    repeats: Annotated[int, typer.Option(help="Evaluations per example (noisy models).")] = 1,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the call cache.")] = False,
    out: Annotated[Path | None, typer.Option(help="Artifact folder (default: runs/<tenant>/eval-…).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate the tenant's current pipeline on a split, keeping every step of every example."""
    import time

    from fapo.evaluate import evaluate
    from fapo.tenant import load_tenant

    settings = _settings()
    t = load_tenant(tenant, settings)
    out = out or settings.runs_dir / t.name / f"eval-{split}-{time.strftime('%Y%m%d-%H%M%S')}"
    bar, cb = progress_bar(f"{t.name} · {split}", not as_json)
    with bar:
        s = evaluate(t, split, out_dir=out, limit=limit, concurrency=concurrency,
                     use_cache=not no_cache, repeats=repeats, on_progress=cb)
    data = {"tenant": t.name, "split": split, "out": str(out), **s.as_dict()}
    data.pop("scores")
    _emit(data, as_json, (out / "summary.md").read_text(encoding="utf-8") + f"\nArtifacts: {out}")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except FapoError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; rerun with --resume to continue where it stopped\n")
        sys.exit(130)


if __name__ == "__main__":
    main()

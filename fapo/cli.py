"""The `fapo` command: a thin layer over the library. Heavy imports happen inside commands, so
`fapo --help` never loads langgraph or a model SDK."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fapo.cli_extra import register as register_extra_commands
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
            sys.stdout.write(
                f"{t.name}: valid ({len(t.prompts)} prompts, "
                f"{len(t.spec.params)} params, scope {', '.join(t.spec.scope)})\n"
            )
    if not ok:
        raise typer.Exit(2)


def progress_bar(description: str, enabled: bool):
    """A rich progress bar on stderr (or a no-op) returning (context manager, callback)."""
    import contextlib

    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    prog = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = prog.add_task(description, total=None)
    return prog, lambda done, total: prog.update(task, completed=done, total=total)


@app.command("eval")
def eval_cmd(
    tenant: str,
    split: Annotated[str, typer.Option(help="train, val or test")] = "val",
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Examples evaluated at once.")] = None,
    repeats: Annotated[int, typer.Option(help="Evaluations per example (noisy models).")] = 1,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not use the call cache.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help="Artifact folder (default: runs/<tenant>/eval-…).")
    ] = None,
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
        s = evaluate(
            t,
            split,
            out_dir=out,
            limit=limit,
            concurrency=concurrency,
            use_cache=not no_cache,
            repeats=repeats,
            on_progress=cb,
        )
    data = {"tenant": t.name, "split": split, "out": str(out), **s.as_dict()}
    data.pop("scores")
    _emit(data, as_json, (out / "summary.md").read_text(encoding="utf-8") + f"\nArtifacts: {out}")


def _live_printer(as_json: bool) -> Any:
    """One line per loop event on stderr: level, variant, best score, budget spent."""
    from fapo.observers import ProgressPrinter

    return ProgressPrinter(quiet=as_json)


@app.command()
def run(
    tenant: str,
    agent: Annotated[
        str | None, typer.Option(help="builtin, claude-code, codex or scripted:FILE")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Resume this run id (see `fapo status`).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Name the run folder (default: timestamp).")
    ] = None,
    budget_variants: Annotated[int | None, typer.Option(help="Max candidates proposed.")] = None,
    budget_calls: Annotated[int | None, typer.Option(help="Max task-model calls issued.")] = None,
    budget_tokens: Annotated[int | None, typer.Option(help="Max task-model tokens.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Max USD (task model + agent).")] = None,
    budget_minutes: Annotated[float | None, typer.Option(help="Max wall-clock minutes.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Examples evaluated at once.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not use the call cache.")
    ] = False,
    seed: Annotated[
        int | None, typer.Option(help="Seed for the statistics (default: tenant's).")
    ] = None,
    trials: Annotated[
        int, typer.Option(min=1, max=100, help="N independent runs (mean ± sd).")
    ] = 1,
    agent_model: Annotated[str | None, typer.Option(help="Override the agent's model.")] = None,
    agent_max_turns: Annotated[
        int | None, typer.Option(help="Override the agent's max turns.")
    ] = None,
    agent_timeout: Annotated[
        float | None, typer.Option(help="Agent wall-clock limit, seconds.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Optimize a tenant: baseline, then attribute → propose → review → compare until done."""
    from fapo.loop import RunOptions
    from fapo.loop import run as run_loop

    agent_overrides = {
        "model": agent_model,
        "max_turns": agent_max_turns,
        "timeout_s": agent_timeout,
    }
    opts = RunOptions(
        agent=agent,
        run_id=resume or run_id,
        resume=resume is not None,
        budget={
            "max_variants": budget_variants,
            "max_calls": budget_calls,
            "max_tokens": budget_tokens,
            "max_usd": budget_usd,
            "max_minutes": budget_minutes,
        },
        concurrency=concurrency,
        use_cache=not no_cache,
        seed=seed,
        agent_settings=agent_overrides,
    )
    if trials > 1:
        from fapo.trials import run_trials

        on_event = None if as_json else _live_printer(False)
        res = run_trials(tenant, opts, trials, _settings(), on_event=on_event)
        _emit(res.as_dict(), as_json, res.text())
        return
    result = run_loop(tenant, opts, _settings(), callbacks=[_live_printer(as_json)])
    data = {
        "run_dir": str(result.run_dir),
        "status": result.status,
        "stop_reason": result.stop_reason,
        "best": result.best,
        "val": result.val,
        "test": result.test,
        "accepted": result.accepted,
    }
    text = (
        f"best {result.best}: val {result.val.get(result.best, 0):.3f} "
        f"(baseline {result.val.get('v000', 0):.3f}), test {result.test.get(result.best, 0):.3f} "
        f"(baseline {result.test.get('v000', 0):.3f})\nreport: {result.run_dir / 'report.md'}"
    )
    _emit(data, as_json, text)


def _find_run(settings: Any, run_ref: str | None) -> Path:
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


@app.command()
def status(
    run_ref: Annotated[
        str | None, typer.Argument(help="Run id or folder (default: latest).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a run stands: status, current best, decisions so far, budget spent."""
    from fapo.report import collect_run

    d = collect_run(_find_run(_settings(), run_ref))
    info = d["info"]
    rows = [
        {
            "variant": v["id"],
            "level": (v["proposal"] or {}).get("level"),
            "decision": (v["decision"] or {}).get("status"),
            "val": v["evals"].get("val", {}).get("mean"),
        }
        for v in d["variants"]
    ]
    data = {
        "run_id": info["run_id"],
        "tenant": info["tenant"],
        "status": info.get("status"),
        "stop_reason": info.get("stop_reason"),
        "best": info.get("best"),
        "spent": info.get("spent"),
        "variants": rows,
    }
    lines = [
        f"{info['tenant']} / {info['run_id']}: {info.get('status')}"
        + (f" ({info['stop_reason']})" if info.get("stop_reason") else "")
    ]
    for r in rows:
        lines.append(
            f"  {r['variant']}  {r['level'] or 'baseline':9}  {r['decision'] or '—':9}  "
            f"val {r['val'] if r['val'] is None else format(r['val'], '.3f')}"
        )
    _emit(data, as_json, "\n".join(lines))


@app.command()
def doctor(
    tenant: Annotated[str | None, typer.Argument(help="Also ping this tenant's models.")] = None,
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Do not send test requests.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Which agent CLIs are installed (versions), which keys are set, and whether each answers."""
    from fapo.doctor import doctor as run_doctor

    settings = _settings()
    rows = run_doctor(settings, probe=not no_probe)
    if tenant:
        from fapo.doctor import ping_models
        from fapo.tenant import load_tenant

        rows += ping_models(load_tenant(tenant, settings), probe=not no_probe)
    lines = [f"{'ok ' if r['ok'] else 'NO '} {r['check']}: {r['detail']}" for r in rows]
    _emit(rows, as_json, "\n".join(lines))
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


register_extra_commands(app)  # report, diff, promote, check, init, trials (fapo/cli_extra.py)


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

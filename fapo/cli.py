"""The `fapo` command: a thin layer over the library. Heavy imports happen inside commands, so
`fapo --help` never loads langgraph or a model SDK."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fapo.cli_common import (
    JsonOpt,
    emit,
    find_run,
    live_printer,
    progress_bar,
    project_settings,
    report_lines,
    report_paths,
)
from fapo.cli_extra import ModelOpt
from fapo.cli_extra import register as register_extra_commands
from fapo.errors import FapoError

app = typer.Typer(
    name="fapo",
    help="Optimize multi-step LLM pipelines: evaluate, attribute, propose, review, compare.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (docs/tenants.md)
    pretty_exceptions_enable=False,
)


@app.command()
def schema(as_json: JsonOpt = False) -> None:
    """Print the JSON Schema of tenant.yaml (for editor completion); it is JSON with or without --json."""
    from fapo.spec import TenantSpec

    emit(TenantSpec.model_json_schema(), True)


@app.command()
def validate(tenant: str, as_json: JsonOpt = False) -> None:
    """Check a tenant without calling any model; exit 2 on the first kind of problem found."""
    from fapo.validate import validate as run_validate

    t, problems, warnings = run_validate(tenant, project_settings())
    ok = not problems
    if as_json:
        emit({"tenant": tenant, "ok": ok, "problems": problems, "warnings": warnings}, True)
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
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate the tenant's current pipeline on a split, keeping every step of every example."""

    from fapo.evaluate import evaluate
    from fapo.model_overrides import parse_overrides
    from fapo.tenant import load_tenant

    settings = project_settings()
    t = load_tenant(tenant, settings, parse_overrides(model))
    t.check_data()  # runs: an empty split or ids shared by splits are errors here too
    from fapo.rundir import new_run_id  # runs: two evals in one second get two folders

    out = out or settings.runs_dir / t.name / f"eval-{split}-{new_run_id()}"
    bar, cb = progress_bar(f"{t.name} · {split}", not as_json)
    with bar:
        try:
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
        except OSError as exc:  # runs: a write without a file name (disk full): the folder
            from fapo.errors import fs_error

            raise fs_error(exc, out) from None
    data = {"tenant": t.name, "split": split, "out": str(out), **s.as_dict()}
    data.pop("scores")
    emit(data, as_json, (out / "summary.md").read_text(encoding="utf-8") + f"\nArtifacts: {out}")


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
    model: ModelOpt = None,
    no_sandbox: Annotated[
        bool,
        typer.Option(
            "--no-sandbox",
            help="Run claude-code/codex without bubblewrap (unsafe: they can read sealed data).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Optimize a tenant: baseline, then attribute → propose → review → compare until done."""
    from fapo.loop import RunOptions
    from fapo.loop import run as run_loop
    from fapo.model_overrides import parse_overrides
    from fapo.run_setup import resumed_models
    from fapo.tenant import load_tenant

    agent_overrides = {
        "model": agent_model,
        "max_turns": agent_max_turns,
        "timeout_s": agent_timeout,
        "sandbox": False if no_sandbox else None,
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
        models=parse_overrides(model),
    )
    if trials > 1:
        from fapo.trials import run_trials

        on_event = None if as_json else live_printer(False)
        res = run_trials(tenant, opts, trials, project_settings(), on_event=on_event)
        emit(res.as_dict(), as_json, res.text())
        return
    settings = project_settings()
    models = resumed_models(tenant, opts, settings)  # --model, or on --resume the run's own
    t = load_tenant(tenant, settings, models)
    printer = live_printer(as_json)
    try:
        result = run_loop(t, opts, settings, callbacks=[printer])
    finally:
        printer.close()  # progress: the live bar leaves the terminal however the run ends
    data = {
        "run_dir": str(result.run_dir),
        "reports": report_paths(result.run_dir),
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
        f"(baseline {result.test.get('v000', 0):.3f})\n{report_lines(result.run_dir)}"
    )
    emit(data, as_json, text)


@app.command()
def status(
    run_ref: Annotated[
        str | None, typer.Argument(help="Run id, run folder or tenant (default: latest run).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a run stands: status, best variant, decisions so far, budget spent (or a tenant's runs)."""
    from fapo import rundir

    settings = project_settings()
    if run_ref and not (Path(run_ref) / "run.json").is_file():
        listed = rundir.tenant_runs(settings.runs_dir, run_ref)
        if listed and not any(r.name == run_ref for r in settings.runs_dir.glob("*/*")):
            _emit_tenant_runs(run_ref, [rundir.summarize(r) for r in listed], as_json)
            return
    from fapo.report import collect_run

    run_dir = find_run(settings, run_ref)
    d = collect_run(run_dir)
    info = d["info"]
    summary = rundir.summarize(run_dir)
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
        "status": summary.status,
        "stop_reason": info.get("stop_reason"),
        "best": summary.best,
        "best_val": summary.best_val,
        "spent": info.get("spent") or _last_spend(run_dir),
        "variants": rows,
    }
    lines = [
        f"{info['tenant']} / {info['run_id']}: {summary.status}"
        + (f" ({info['stop_reason']})" if info.get("stop_reason") else ""),
        f"  best: {_best_text(data['best'], data['best_val'], rows)}",
        f"  spent: {rundir.spend_text(data['spent'] or {})}",
    ]
    for r in rows:
        lines.append(
            f"  {r['variant']}  {r['level'] or 'baseline':9}  {r['decision'] or '—':9}  "
            + ("not evaluated" if r["val"] is None else f"val {r['val']:.3f}")
        )
    emit(data, as_json, "\n".join(lines))


def _best_text(best: str | None, best_val: float | None, rows: list[dict[str, Any]]) -> str:
    if best is None:  # still running: the best so far is the highest accepted val
        kept = [r for r in rows if r["val"] is not None and r["decision"] in (None, "accepted")]
        if not kept:
            return "none yet"
        top = max(kept, key=lambda r: r["val"])
        return f"{top['variant']} so far (val {top['val']:.3f})"
    return f"{best}" + ("" if best_val is None else f" (val {best_val:.3f})")


def _last_spend(run_dir: Path) -> dict[str, Any]:
    from fapo.events import EventLog

    return EventLog(run_dir / "events.jsonl").last_budget() or {}


def _emit_tenant_runs(tenant: str, runs: list[Any], as_json: bool) -> None:
    from fapo import rundir

    data = [
        {
            "run_id": r.run_id,
            "status": r.status,
            "stop_reason": r.stop_reason,
            "best": r.best,
            "best_val": r.best_val,
            "spent": r.spent,
            "run_dir": str(r.run_dir),
        }
        for r in runs
    ]
    lines = [f"{tenant}: {len(runs)} run{'s' if len(runs) != 1 else ''}"]
    for r in runs:
        best = "" if r.best is None else f"  best {r.best}"
        best += "" if r.best_val is None else f" (val {r.best_val:.3f})"
        reason = f" — {r.stop_reason}" if r.stop_reason else ""
        lines.append(f"  {r.run_id}  {r.status}{best}  {rundir.spend_text(r.spent)}{reason}")
    emit({"tenant": tenant, "runs": data}, as_json, "\n".join(lines))


@app.command()
def doctor(
    tenant: Annotated[
        str | None, typer.Argument(help="Check what this tenant uses and ping its models.")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            help="Check this agent instead of the configured one (builtin, claude-code, codex)."
        ),
    ] = None,
    no_probe: Annotated[
        bool, typer.Option("--no-probe", help="Do not send test requests.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Which agent CLIs are installed, which keys are set, whether each answers.

    Exit 1 only when something the configuration uses is missing (`NO` lines); `--` lines are
    agents or keys nothing configured needs. An offline set-up (sim model, built-in agent) passes.
    """
    from fapo.doctor import doctor as run_doctor
    from fapo.doctor import failing, format_rows, needs_of

    settings = project_settings()
    t = None
    if tenant:
        from fapo.tenant import load_tenant

        t = load_tenant(tenant, settings)
    needs = needs_of(settings, t, agent)
    rows = run_doctor(settings, probe=not no_probe, needs=needs)
    if t is not None:
        from fapo.doctor import ping_models

        rows += ping_models(t, probe=not no_probe)
    emit(rows, as_json, format_rows(rows))
    if failing(rows):
        raise typer.Exit(1)


register_extra_commands(app)  # report, diff, promote, check, init, trials (fapo/cli_extra.py)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except FapoError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    except OSError as exc:  # runs: a file-system problem is one line too (the file, the fix)
        from fapo.errors import fs_error

        sys.stderr.write(f"error: {fs_error(exc)}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; rerun with --resume to continue where it stopped\n")
        sys.exit(130)


if __name__ == "__main__":
    main()

"""Commands for human review and nightly CI: report, diff, promote, check, init, trials.

Only typer and the standard library at module level: `fapo --help` stays fast and never loads
langgraph or a model SDK. Everything heavy is imported inside the command that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fapo.cli_common import (
    JsonOpt,
    RunArg,
    emit,
    find_run,
    live_printer,
    progress_bar,
    project_settings,
)
from fapo.errors import FapoError


def report(
    run_ref: RunArg = None,
    html: Annotated[
        bool, typer.Option("--html", help="Also write the self-contained report.html.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """(Re)build a run's report.md (and report.html) from its artifact folder."""
    from fapo.report import write_report

    run_dir = find_run(project_settings(), run_ref)
    paths = {"markdown": str(write_report(run_dir))}
    if html:
        from fapo.report_html import write_html

        paths["html"] = str(write_html(run_dir))
    emit(
        {"run_dir": str(run_dir), **paths},
        as_json,
        "\n".join(f"{k}: {v}" for k, v in paths.items()),
    )


def diff(
    run_ref: Annotated[str, typer.Argument(help="Run id or run folder.")],
    variant: Annotated[
        str | None,
        typer.Argument(
            help="Show this variant's own change against its parent "
            "(default: baseline → final, what `fapo promote` writes)."
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(help="Compare with this variant instead (default: see VARIANT)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A run's change as a unified diff: baseline → final by default, or one variant's own change."""
    from fapo.artifacts import read_json
    from fapo.events import EventLog
    from fapo.promote import best_variant, variant_files
    from fapo.workspace import unified_diff

    run_dir = find_run(project_settings(), run_ref)
    info = read_json(run_dir / "run.json")
    vid = variant or best_variant(run_dir, info)
    vdir = run_dir / "variants" / vid
    if not vdir.is_dir():
        variant_files(run_dir, vid)  # raises the one-line "no variant" error listing the known ones
    decision = read_json(vdir / "decision.json") if (vdir / "decision.json").is_file() else None
    proposal = None
    for e in EventLog(run_dir / "events.jsonl").events:
        if e["kind"] == "proposal" and e["key"] == vid:
            proposal = e["data"]
    # Without a variant the question is "what would promote change": the whole way from the
    # baseline. Naming a variant asks what that one proposal changed, i.e. against its parent.
    parent = (proposal or {}).get("parent") or "v000"
    base = against or (parent if variant else "v000")
    if decision and decision.get("status") == "invalid" and not (vdir / "files").exists():
        text = ""
    else:
        text = unified_diff(variant_files(run_dir, base), variant_files(run_dir, vid))
    status = (decision or {}).get("status", "baseline" if vid == "v000" else "pending")
    if variant is None and against is None:
        head = f"# baseline v000 → final {vid} (what `fapo promote` writes)"
        if vid != "v000":
            head += f"; {vid} was {status}"
    else:
        head = f"# {vid} ({(proposal or {}).get('level', 'baseline')}) against {base}: {status}" + (
            f" — {decision['reason']}" if decision and decision.get("reason") else ""
        )
    emit(
        {
            "run_dir": str(run_dir),
            "variant": vid,
            "against": base,
            "status": status,
            "reason": (decision or {}).get("reason"),
            "level": (proposal or {}).get("level"),
            "diff": text,
        },
        as_json,
        head + "\n" + (text or "(no change)\n"),
    )


def promote(
    run_ref: Annotated[str, typer.Argument(help="Run id or run folder.")],
    variant: Annotated[
        str | None, typer.Argument(help="Variant (default: the run's final one).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write even if the tenant changed since the run started."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the change, write nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a variant's prompts/params/chain back into the tenant folder, for review and commit."""
    from fapo.promote import promote as do_promote

    settings = project_settings()
    r = do_promote(
        find_run(settings, run_ref), variant, force=force, settings=settings, dry_run=dry_run
    )
    status = (r.decision or {}).get("status")
    if not r.written and not r.deleted:
        text = f"{r.tenant_root} already has the files of {r.variant}; nothing to do"
    else:
        verb = "would change" if dry_run else "changed"
        text = (
            r.diff + f"\n{r.variant} ({status or 'baseline'}) {verb}: "
            f"{', '.join(r.written + [f'{d} (deleted)' for d in r.deleted])}"
        )
        if r.forced:
            text += "\nwarning: forced over tenant changes made since the run started"
        if status not in (None, "accepted") and r.variant != "v000":
            text += f"\nnote: {r.variant} was {status}, not accepted"
        if not dry_run:
            text += f"\nreview with `git diff -- {r.tenant_root}`, then commit"
    emit({**r.as_dict(), "dry_run": dry_run}, as_json, text)


def check(
    tenant: Annotated[str, typer.Argument(help="Tenant name or folder.")],
    against: Annotated[
        str | None,
        typer.Option(
            help="Run id/folder or baseline JSON file (default: the latest evaluation of the "
            "same pipeline files; none recorded is exit 2)."
        ),
    ] = None,
    max_drop: Annotated[float, typer.Option(help="Largest allowed score drop (e.g. 0.02).")] = 0.0,
    split: Annotated[str, typer.Option(help="val or test.")] = "val",
    junit: Annotated[Path | None, typer.Option(help="Write a JUnit XML verdict here.")] = None,
    save_baseline: Annotated[
        Path | None, typer.Option(help="Also write this evaluation as a baseline file.")
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache",
            help="Allow cached model calls (off by default: a replay hides model updates).",
        ),
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Examples evaluated at once.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Artifact folder (default: runs/<tenant>/check-…).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Regression gate: re-evaluate; exit 1 when the score fell more than --max-drop below baseline.

    Exit codes: 0 pass, 1 regression, 2 nothing to compare with or bad input.
    """
    from fapo.gate import gate_check as run_check
    from fapo.gate import save_baseline as write_baseline
    from fapo.gate import write_junit

    settings = project_settings()
    bar, cb = progress_bar(f"check {tenant} · {split}", not as_json)
    with bar:
        v = run_check(
            tenant,
            settings,
            against=against,
            max_drop=max_drop,
            split=split,
            out_dir=out,
            use_cache=cache,
            limit=limit,
            concurrency=concurrency,
            on_progress=cb,
            record_only_if_missing=save_baseline is not None,
        )
    if junit:
        write_junit(junit, v)
    data = v.as_dict()
    text = ("PASS " if v.ok else "FAIL ") + v.reason
    if save_baseline:
        from fapo.artifacts import read_json
        from fapo.tenant import load_tenant

        summary = read_json(Path(v.out_dir) / "summary.json")
        write_baseline(
            save_baseline,
            {"score": summary["mean"], "scores": summary["scores"]},
            v.tenant,
            split,
            load_tenant(tenant, settings).fingerprint(),
        )
        data["baseline_file"] = str(save_baseline)
        text += (
            f"\nwrote baseline {save_baseline} ({split} score {summary['mean']:.3f} over "
            f"{len(summary['scores'])} examples); compare with it later via --against {save_baseline}"
        )
    emit(data, as_json, text)
    if not v.ok:
        raise typer.Exit(1)


def init(
    name: Annotated[str, typer.Argument(help="Name of the new tenant (letters, digits, - and _).")],
    template: Annotated[str, typer.Option(help="qa, classify or instructions.")] = "qa",
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Create it here (default: <tenants>/<name>).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a tenant from a template that validates and evaluates at once (simulated model)."""
    from fapo.scaffold import create

    settings = project_settings()
    dest = directory or settings.tenants_dir / name
    files = create(name, template, dest)
    ref = name if dest.resolve() == (settings.tenants_dir / name).resolve() else str(dest)
    emit(
        {"tenant": name, "template": template, "path": str(dest), "files": files},
        as_json,
        f"created {dest} from template '{template}' ({len(files)} files)\n"
        f"next: fapo validate {ref} && fapo eval {ref} && fapo run {ref}\n"
        "tenant.yaml explains every key; the task model is the offline simulator "
        "(sim:default) until you set models.task",
    )


def trials(
    tenant: Annotated[str, typer.Argument(help="Tenant name or folder.")],
    n: Annotated[int, typer.Option("--n", min=2, max=100, help="Number of independent runs.")] = 3,
    agent: Annotated[
        str | None, typer.Option(help="builtin, claude-code, codex or scripted:FILE")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Base run id; trials are <id>-t1 … <id>-tN.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Resume the trials of --run-id.")
    ] = False,
    budget_variants: Annotated[int | None, typer.Option(help="Max candidates per trial.")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="Max USD per trial.")] = None,
    budget_minutes: Annotated[float | None, typer.Option(help="Max minutes per trial.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Examples evaluated at once.")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of trial 1; trial i uses seed+i-1.")
    ] = None,
    shared_cache: Annotated[
        bool,
        typer.Option(
            "--shared-cache",
            help="Let trials share the call cache (then they are not independent).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """N independent runs with different seeds, reported as mean ± sd (what `fapo run --trials N` does)."""
    from fapo.loop import RunOptions
    from fapo.trials import run_trials

    if resume and not run_id:
        raise FapoError("--resume needs --run-id, the base id of the trials to resume")
    opts = RunOptions(
        agent=agent,
        run_id=run_id,
        resume=resume,
        budget={
            "max_variants": budget_variants,
            "max_usd": budget_usd,
            "max_minutes": budget_minutes,
        },
        concurrency=concurrency,
        seed=seed,
    )
    res = run_trials(
        tenant,
        opts,
        n,
        project_settings(),
        shared_cache=shared_cache,
        on_event=None if as_json else live_printer(False),
    )
    emit(res.as_dict(), as_json, res.text())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `fapo` app."""
    app.command()(report)
    app.command()(diff)
    app.command()(promote)
    app.command()(check)
    app.command()(init)
    app.command()(trials)

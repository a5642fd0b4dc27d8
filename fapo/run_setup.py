"""Opening a run folder (new, or resumed after a kill) and wiring the run's agent.

`open_run` writes `run.json` for a new run, or checks a resumed one (the tenant's immutable files
must be unchanged) and restores its spend; `make_agent` builds the agent named on the command line.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fapo.rundir as rundir
import fapo.sequential as seq  # sequential: run-level error control in run.json
from fapo import __version__
from fapo.agents.base import Agent
from fapo.artifacts import read_files, read_json, write_files, write_json
from fapo.attribute import ladder
from fapo.budget import Budget
from fapo.errors import FapoError
from fapo.events import EventLog
from fapo.meter import Meter
from fapo.records import StopRecord
from fapo.spec import BudgetSpec
from fapo.tenant import Tenant, load_tenant

if TYPE_CHECKING:
    from fapo.loop import Run
    from fapo.sandbox import Guard
    from fapo.settings import Settings


@dataclass(frozen=True)
class RunOptions:
    agent: str | None = None
    run_id: str | None = None
    resume: bool = False
    budget: dict[str, Any] = field(default_factory=dict)  # overrides of tenant.yaml budget
    concurrency: int | None = None
    use_cache: bool = True
    seed: int | None = None
    agent_settings: dict[str, Any] = field(default_factory=dict)  # CLI overrides (model, …)
    models: dict[str, str] = field(default_factory=dict)  # localllm: --model ROLE=SPEC


def agent_kind(tenant: Tenant, options: RunOptions) -> str:
    """The agent named on the command line, else in tenant.yaml, else in fapo.toml."""
    spec = tenant.spec.agent
    return options.agent or (spec.kind if spec and spec.kind else tenant.settings.defaults.agent)


def make_agent(kind: str, run: Run) -> Agent:
    """The agent named on the command line / in settings, wired to this run."""
    if kind == "builtin":
        from fapo.agents.builtin import BuiltinAgent
        from fapo.interventions import probed_ids  # thrift:

        agent = BuiltinAgent(train_score=run.train_score, functions=run.functions)
        agent.on_scored = run.progress.on_scored  # progress: "moves scored k/N" during a proposal
        agent.probed = lambda: probed_ids(run.log, run.st.incumbent)  # thrift: race where cached
        return agent
    if kind.startswith("scripted:"):
        from fapo.agents.scripted import ScriptedAgent

        return ScriptedAgent.from_file(Path(kind.split(":", 1)[1]), run.tenant.root)
    if kind in ("claude-code", "codex"):
        from fapo.agents.cli_runner import merged_settings

        settings = merged_settings(
            run.settings.agent(kind),
            run.tenant.spec.agent,
            {k: v for k, v in run.options.agent_settings.items() if v is not None},
        )
        if settings.sandbox:  # refuse, in one line, where bwrap cannot run (docs/security.md)
            from fapo.sandbox import require

            require(kind)
        from fapo.agents.claude_code import ClaudeCodeAgent
        from fapo.agents.codex import CodexAgent

        cls = ClaudeCodeAgent if kind == "claude-code" else CodexAgent
        return cls(settings, project_root=run.settings.root, prices=run.settings.prices)
    raise FapoError(f"unknown agent '{kind}'; use builtin, claude-code, codex or scripted:FILE")


def cli_agent_now(run: Run) -> Agent | None:
    """A CLI agent made at once, so a missing sandbox refuses before any work; else None."""
    return make_agent(run.agent_kind, run) if run.agent_kind in ("claude-code", "codex") else None


def contain(run: Run) -> Guard:
    """The propose stage's guard for this run (docs/security.md): the tenant is snapshotted
    once so any tampering can be put back; known key values; the run's leak index."""
    from fapo.review import key_values
    from fapo.sandbox import Guard, snapshot_tenant

    snapshot_tenant(run.tenant.root, run.dir / "tenant-snapshot")
    s = run.settings
    names = [a.api_key_env for a in s.agents.values() if a.api_key_env]
    keys = key_values(os.environ, names)
    trusted = run.agent_kind == "builtin"
    return Guard(s.root, run.tenant.root, run.dir, s.cache_path, trusted, keys, run.leaks)


def open_run(run: Run) -> tuple[EventLog, dict[str, str]]:
    """(event log, immutable-file hashes) of a new or resumed run; sets up variant v000."""
    run_json = run.dir / "run.json"
    if run.options.resume and not run_json.is_file():
        raise FapoError(f"no run '{run.run_id}' under {run.dir.parent}; see `fapo status`")
    if not run.options.resume and run_json.is_file():
        raise FapoError(f"run folder {run.dir} already exists; use --resume {run.run_id}")
    run.dir.mkdir(parents=True, exist_ok=True)
    log = EventLog(run.dir / "events.jsonl")
    immutable = run.tenant.immutable_hashes()
    if run.options.resume:
        before = read_json(run_json)["immutable"]
        if before != immutable:
            changed = sorted(
                k for k in set(before) | set(immutable) if before.get(k) != immutable.get(k)
            )
            raise FapoError(
                f"tenant files changed since the run started ({', '.join(changed[:3])}); "
                "restore them or start a new run"
            )
        snap = log.last_budget()
        if snap:
            run.budget.restore(snap)
            run.budget.variants = 0  # recounted while replaying
        budget = run.budget.spec.model_dump()  # progress: a raised budget is the run's from now
        rundir.note_resume(run.dir, _options_record(run), budget)  # runs: what it runs with
    else:
        write_json(
            run_json,
            {
                "run_id": run.run_id,
                "tenant": run.tenant.name,
                "root": str(run.tenant.root),
                "status": "running",
                "started": time.time(),
                "agent": run.agent_kind,
                "spec": run.tenant.spec.model_dump(),
                "budget": run.budget.spec.model_dump(),
                "options": _options_record(run),  # everything a resume restores
                "versions": {"fapo": __version__, "python": platform.python_version()},
                "immutable": immutable,
            },
        )
    base = run.dir / "variants" / "v000" / "files"
    files = read_files(base)
    if files is None:
        files = dict(run.tenant.files)
        write_files(base, files)
    run.variants["v000"] = replace(run.tenant, files=files)
    return log, immutable


def _options_record(run: Run) -> dict[str, Any]:
    """run.json `options`: what `rundir.restore_options` gives back on `--resume`."""
    given = {k: v for k, v in run.options.budget.items() if v is not None}
    return rundir.options_record(run.options, agent=run.agent_kind, seed=run.seed, budget=given)


def save_val_attribution(run: Run, variants: Sequence[str]) -> None:
    """The ladder on val for baseline and final (`attribution-val.json`), for the report only:
    agents never see it, and the report never re-runs the ladder or needs the tenant folder."""
    for vid in variants:
        results = run.vdir(vid) / "eval" / "val" / "results.jsonl"
        if results.is_file() and vid in run.variants:
            att = ladder(run.variants[vid], results, split="val")
            write_json(run.vdir(vid) / "attribution-val.json", att.model_dump(mode="json"))


def make_budget(spec: BudgetSpec, overrides: dict[str, Any]) -> Budget:
    """The tenant's budget with the command line's overrides (None = not given)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    merged = BudgetSpec(**{**spec.model_dump(), **given})
    meter = Meter(merged.max_calls, merged.max_tokens, merged.max_usd)
    return Budget(merged, meter, started=time.time())


def chain_functions(tenant: Tenant) -> dict[str, Any]:
    """Functions the tenant's chain registers (for structural transforms)."""
    from fapo.validate import null_factory

    _, ctx = tenant.build(null_factory(dict(tenant.spec.models)))
    return dict(ctx.functions)


def close_run(run: Run, stop: StopRecord, val: dict[str, float], test: dict[str, float]) -> None:
    """Mark `run.json` finished with the stop reason, scores and spend."""
    info = read_json(run.dir / "run.json")
    info.update(
        status="finished",
        stop_reason=stop.reason,
        stop_kind=stop.kind.value,
        best=stop.best,
        accepted=stop.accepted,
        val=val,
        test=test,
        spent=run.budget.snapshot(time.time()),
        finished=time.time(),
        error_control=seq.error_control(
            run.acceptance,
            run.tenant.spec.acceptance,
            run.budget.spec.max_variants,
            seq.prior_decisions(run.log),
        ),  # sequential:  # fmt: skip
    )
    write_json(run.dir / "run.json", info)


def resumed_models(tenant: str | Path, options: Any, settings: Settings | None) -> dict[str, str]:
    """The `--model` overrides of a run: the command line's, else on `--resume` the ones recorded
    in run.json, so a resumed run never silently switches model."""
    models = dict(getattr(options, "models", None) or {})
    if models or not options.resume or not options.run_id:
        return models
    t = load_tenant(tenant, settings)
    info = t.settings.runs_dir / t.name / options.run_id / "run.json"
    if not info.is_file():
        return {}
    return dict((read_json(info).get("options") or {}).get("models") or {})

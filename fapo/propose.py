"""The propose stage: brief the agent, run it in a fresh workspace, read what it changed from disk.

Owns the brief, the temporary workspace's life cycle, outside-write detection, the agent's
transcripts and its spend. Returns a `ProposalRecord`; the variant's files and `diff.patch` are
written under the variant's folder when something changed.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fapo.agents.base import Agent, Brief
from fapo.agents.cli_runner import detect_outside_writes
from fapo.artifacts import (
    copy_transcripts,
    read_files,
    snapshot,
    write_files,
    write_json,
    write_text,
)
from fapo.attribute import traces_for
from fapo.records import Cluster, DecisionRecord, Level, ProposalRecord, spend
from fapo.tenant import Tenant
from fapo.workspace import allowed_files, collect, context_listing, prepare, unified_diff

RULES = [
    "Change only the files listed above; everything else is read-only and checked by hash.",
    "One proposal = one scoped change. Do not touch the scorer, checks, data or tenant.yaml.",
    "Never copy validation or test text into a file; you only see train evidence.",
    "Keep every {placeholder} a prompt already uses; the chain supplies exactly those.",
    "Parameters must stay inside their declared bounds.",
]


@dataclass(frozen=True)
class Incumbent:
    """What a proposal builds on: the incumbent variant, its id, scores and train results."""

    id: str
    tenant: Tenant
    scores: dict[str, float]  # aggregate train/val means, the only val figure an agent sees
    train_results: Path


def build_brief(
    inc: Incumbent, level: Level, cluster: Cluster | None, history: Sequence[dict[str, Any]]
) -> Brief:
    """Everything the proposer is told, from train evidence only."""
    spec = inc.tenant.spec
    return Brief(
        tenant=spec.name,
        level=level,
        objective=(
            f"Raise the mean score of the pipeline (scorer: {spec.scorer}) "
            f"by fixing the failure cluster below with one {level}-level change."
        ),
        scores=dict(inc.scores),
        cluster=cluster,
        traces=traces_for(inc.train_results, cluster.example_ids) if cluster else [],
        allowed_files=allowed_files(inc.tenant, level),
        param_bounds={k: v.model_dump() for k, v in spec.params.items()}
        if level == "parameter"
        else {},
        history=list(history),
        rules=RULES,
    )


def propose(
    agent: Agent,
    inc: Incumbent,
    *,
    variant: str,
    level: Level,
    cluster: Cluster | None,
    history: Sequence[dict[str, Any]],
    out_dir: Path,
    watch: Sequence[Path],
    exclude: Sequence[Path] = (),
    functions: Callable[[], dict[str, Any]] = dict,
) -> ProposalRecord:
    """One proposal at `level` for `cluster`. `out_dir` is the variant's folder; files under
    `watch` (tenant, run folder) written by the agent outside its workspace are reported."""
    brief = build_brief(inc, level, cluster, history)
    extra = {"traces.json": json.dumps(brief.traces, indent=2, default=str)}
    if level == "structure":
        extra["functions.md"] = context_listing(functions())
    pdir = out_dir / "proposal"
    with tempfile.TemporaryDirectory(prefix="fapo-ws-") as tmp:
        ws = Path(tmp) / "workspace"
        prepare(ws, inc.tenant, level, brief, extra)
        before = snapshot(ws)
        started = time.time()
        proposal = agent.propose(brief, ws)
        changes, stray = collect(ws, before, inc.tenant)
        outside = detect_outside_writes(list(watch), started, ws, exclude=list(exclude))
        copy_transcripts(Path(tmp), pdir)
    write_text(pdir / "brief.md", brief.to_markdown())
    # Keep the workspace's context/ (train-only traces, function listing) beside brief.md, so the
    # brief's `context/traces.json` exists in the run folder too (issue 18).
    for name, text in extra.items():
        write_text(pdir / "context" / name, text)
    write_json(pdir / "proposal.json", proposal.model_dump())
    if changes:
        old = dict(inc.tenant.files)
        new_files = {k: v for k, v in {**old, **changes}.items() if v is not None}
        write_files(out_dir / "files", new_files)
        write_text(out_dir / "diff.patch", unified_diff(old, new_files))
    return ProposalRecord(
        variant=variant,
        parent=inc.id,
        level=level,
        cluster=cluster,
        changes=sorted(changes),
        deleted=sorted(k for k, v in changes.items() if v is None),
        stray=stray,
        outside=outside,
        rationale=proposal.rationale,
        failure=proposal.failure,
        failure_kind=proposal.kind,
        agent_usd=spend(proposal.invocations),
    )


def history_entry(prop: ProposalRecord, decision: DecisionRecord) -> dict[str, Any]:
    """What later briefs are told about this attempt (`Brief.history`)."""
    c = prop.cluster
    return {
        "variant": prop.variant,
        "level": prop.level,
        "rationale": prop.rationale,
        "cluster": f"{c.step}: {c.cause}" if c else None,
        "outcome": decision.status.value,
        "reason": decision.reason,
    }


def changes_of(prop: ProposalRecord, variant_dir: Path) -> dict[str, str | None]:
    """The proposal's changed files as stored under its variant folder (None = deleted)."""
    files = read_files(variant_dir / "files") or {}
    return {rel: files.get(rel) for rel in prop.changes}

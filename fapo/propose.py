"""The propose stage: brief the agent, run it in a fresh workspace, read what it changed from disk.

Owns the temporary workspace's life cycle, outside-write detection, the agent's transcripts and
its spend; the brief itself is fapo/brief.py, earlier attempts fapo/history.py. Returns a
`ProposalRecord`; the variant's files and `diff.patch` are written under the variant's folder
when something changed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fapo import findings as findings_mod
from fapo.agents.agent_env import redact, secret_values
from fapo.agents.base import Agent, Brief, Proposal, ProposalFailure
from fapo.artifacts import (
    copy_transcripts,
    read_files,
    snapshot,
    write_files,
    write_json,
    write_text,
)
from fapo.attribution_context import (
    attribution_context as attribution_context,  # re-exported (tests, docs/agent_briefs.py)
)
from fapo.brief import RULES as RULES  # re-exported: docs/agent_briefs.py reads it here
from fapo.brief import Incumbent, build_brief
from fapo.catalogue import Outline, chain_outline, outline_markdown, transform_catalogue
from fapo.errors import FapoError
from fapo.history import enrich_history
from fapo.history import plateau as plateau  # re-exported (tests)
from fapo.records import Cluster, Finding, FindingKind, Level, ProposalRecord, spend
from fapo.review import redact_keys
from fapo.sandbox import Guard, detect_outside_writes, symlinks_in, write_clock
from fapo.tenant import Tenant
from fapo.workspace import (
    collect,
    context_listing,
    prepare,
    undecodable,
    unified_diff,
    visible_brief,
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
    watch: Sequence[Path] = (),
    exclude: Sequence[Path] = (),
    functions: Callable[[], dict[str, Any]] = dict,
    scratch: Path | None = None,
    guard: Guard | None = None,
) -> ProposalRecord:
    """One proposal at `level` for `cluster`. `out_dir` is the variant's folder; files under
    `watch` (tenant, run folder) written by the agent outside its workspace are reported.
    The workspace is created in `scratch` (the run's, `fapo.rundir.scratch`; default: TMP).

    With `guard` (fapo/sandbox.py, docs/security.md) the scans widen (project root, and TMP and
    HOME for agents outside bwrap; `watch`/`exclude` are then unused), tampering is put back,
    its leak index keeps leaky tenant files out of the workspace and its keys are redacted
    before anything is recorded. An exception in the agent becomes an invalid proposal."""
    outline = _outline(inc.tenant)
    leak_index = guard.leak_index if guard else None
    history = enrich_history(history, out_dir.parent, leak_index)
    brief = build_brief(inc, level, cluster, history, outline=outline)
    extra = {"traces.json": json.dumps(brief.traces, indent=2, default=str)}
    seed: dict[str, str] = {}
    if level in ("structure", "code"):
        fns = functions()
        extra["functions.md"] = context_listing(fns)
        extra["transforms.md"] = transform_catalogue(fns)
        if outline is not None:
            extra["chain.md"] = outline_markdown(outline)
        if "structure.yaml" not in inc.tenant.files:
            seed["structure.yaml"] = "transforms: []\n"  # the file to edit, empty
    pdir = out_dir / "proposal"
    with tempfile.TemporaryDirectory(prefix="fapo-ws-", dir=scratch) as tmp:
        ws = Path(tmp) / "workspace"
        withheld = prepare(ws, inc.tenant, level, brief, extra, leak_index=leak_index)
        for rel, text in seed.items():
            (ws / rel).write_text(text, encoding="utf-8")
        before = snapshot(ws)
        contained = bool(getattr(agent, "contained", False))
        restore = guard.restore_point(contained) if guard else None
        started = write_clock(Path(tmp))
        proposal = safe_propose(agent, brief, ws)
        links = symlinks_in(ws)  # blocked, never followed
        changes, stray = collect(ws, before, inc.tenant)
        changes = {r: t for r, t in changes.items() if r not in links}
        stray = sorted({*stray, *(f"{r} (symlink)" for r in links)})
        invalid = undecodable(ws, changes)
        changes, key_hits = redact_keys(changes, guard.keys if guard else {})
        if guard is not None:
            outside, reverted = guard.after(started, ws, contained, restore)
        else:
            outside = detect_outside_writes(list(watch), started, ws, exclude=list(exclude))
            reverted = []
        copy_transcripts(Path(tmp), pdir)
    findings = findings_mod.of_invocations(
        proposal.invocations, workspace=ws, sealed=findings_mod.tenant_sealed(inc.tenant)
    )
    proposal = _blocked_by_findings(proposal, findings)
    write_text(pdir / "brief.md", visible_brief(brief, withheld).to_markdown())
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
        reverted=reverted,
        withheld=withheld,
        invalid=invalid,
        key_hits=key_hits,
        findings=findings,
        rationale=proposal.rationale,
        failure=proposal.failure,
        failure_kind=proposal.kind,
        agent_usd=spend(proposal.invocations),
    )


def _outline(tenant: Tenant) -> Outline | None:
    """The incumbent's chain outline; None when it does not build without a model, or when its
    chain.py is not the tenant author's (a code-level candidate is built only in the sandboxed
    worker, never in this process: docs/security.md)."""
    own = tenant.root / "chain.py"
    try:
        if not own.is_file() or tenant.files.get("chain.py") != own.read_text(encoding="utf-8"):
            return None
        return chain_outline(tenant)
    except (FapoError, OSError, UnicodeDecodeError):
        return None


def _blocked_by_findings(proposal: Proposal, findings: Sequence[Finding]) -> Proposal:
    """An attempt to read sealed data blocks the proposal, whatever else it did."""
    sealed = [f for f in findings if f.kind is FindingKind.SEALED_READ]
    if not sealed or (proposal.kind is not None and proposal.kind.blocks):
        return proposal
    what = "; ".join(f.detail for f in sealed[:3])
    return proposal.model_copy(
        update={
            "failure": f"tried to read sealed data: {what}",
            "failure_kind": ProposalFailure.SEALED_READ,
        }
    )


def safe_propose(agent: Agent, brief: Brief, workspace: Path) -> Proposal:
    """`agent.propose`, with an exception turned into an invalid proposal (redacted reason)
    instead of a traceback that leaves the run 'running'."""
    try:
        return agent.propose(brief, workspace)
    except Exception as exc:  # noqa: BLE001 - any agent failure is a recorded, invalid proposal
        why = redact(f"{type(exc).__name__}: {exc}", secret_values(os.environ))[:500]
        return Proposal(failure=f"agent raised {why}", failure_kind=ProposalFailure.AGENT_ERROR)


def changes_of(prop: ProposalRecord, variant_dir: Path) -> dict[str, str | None]:
    """The proposal's changed files as stored under its variant folder (None = deleted)."""
    files = read_files(variant_dir / "files") or {}
    return {rel: files.get(rel) for rel in prop.changes}

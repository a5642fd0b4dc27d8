"""The propose stage: brief the agent, run it in a fresh workspace, read what it changed from disk.

Owns the brief, the temporary workspace's life cycle, outside-write detection, the agent's
transcripts and its spend. Returns a `ProposalRecord`; the variant's files and `diff.patch` are
written under the variant's folder when something changed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fapo import findings as findings_mod
from fapo.agents.base import (
    Agent,
    AttributionAnswer,
    AttributionRequest,
    Brief,
    PromptInfo,
    Proposal,
    ProposalFailure,
    ReviewRequest,
    Verdict,
)
from fapo.agents.cli_runner import redact, secret_values
from fapo.agents.prompts import LEVEL_DEFINITIONS, PLATEAU_RULE, SYNTHETIC_RULE, TECHNIQUES
from fapo.artifacts import (
    copy_transcripts,
    read_files,
    snapshot,
    write_files,
    write_json,
    write_text,
)
from fapo.attribute import iter_results, traces_for
from fapo.catalogue import (
    Outline,
    chain_outline,
    outline_markdown,
    prompt_steps,
    transform_catalogue,
)
from fapo.context import placeholders
from fapo.errors import FapoError
from fapo.joint import joint_pairs, read_records  # joint: key -> prompts of its step
from fapo.records import (
    Cluster,
    DecisionRecord,
    Finding,
    FindingKind,
    Level,
    ProposalRecord,
    Status,
    spend,
)
from fapo.review import redact_keys
from fapo.sandbox import Guard, detect_outside_writes, symlinks_in
from fapo.tenant import Tenant
from fapo.workspace import (
    LeakCheck,
    allowed_files,
    collect,
    context_listing,
    prepare,
    prepare_attribution,
    undecodable,
    unified_diff,
    visible_brief,
)

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
    inc: Incumbent,
    level: Level,
    cluster: Cluster | None,
    history: Sequence[dict[str, Any]],
    *,
    outline: Outline | None = None,
) -> Brief:
    """Everything the proposer is told, from train evidence only: per level what its change
    needs (steps; parameter bounds and current values; prompts with their variables and the
    steps that use them), earlier attempts, techniques and a plateau warning."""
    spec = inc.tenant.spec
    prompts: list[PromptInfo] = []
    if outline is not None and level in ("prompt", "structure", "code"):
        used = prompt_steps(inc.tenant.prompts, _records(inc.train_results))
        blamed = cluster.step if cluster else None
        for name, text in inc.tenant.prompts.items():
            variables = outline.prompts.get(name) or sorted(placeholders(text))
            steps = used.get(name, [])
            prompts.append(
                PromptInfo(
                    file=f"prompts/{name}.md",
                    variables=list(variables),
                    steps=steps,
                    implicated=blamed in steps,
                )
            )
        prompts.sort(key=lambda p: not p.implicated)
    parameter = level == "parameter"
    return Brief(
        tenant=spec.name,
        level=level,
        objective=(
            f"Raise the mean score of the pipeline (scorer: {spec.scorer}) "
            f"by fixing the failure cluster below with one {level}-level change. "
            f"At this level: {LEVEL_DEFINITIONS[level]}."
        ),
        scores=dict(inc.scores),
        cluster=cluster,
        traces=traces_for(inc.train_results, cluster.example_ids) if cluster else [],
        allowed_files=allowed_files(inc.tenant, level),
        param_bounds={k: v.model_dump() for k, v in spec.params.items()} if parameter else {},
        param_values=dict(inc.tenant.params) if parameter else {},
        joint=joint_pairs(inc.tenant, read_records(inc.train_results))
        if parameter
        else {},  # joint:
        history=list(history),
        rules=[*RULES, SYNTHETIC_RULE],
        steps=list(outline.steps) if outline else [],
        prompts=prompts,
        context_files=_context_files(inc.tenant, level, cluster),
        techniques=list(TECHNIQUES),
        plateau=plateau(history, level),
        structure=inc.tenant.files.get("structure.yaml", "transforms: []\n")
        if level in ("structure", "code")
        else None,
    )


def _records(path: Path) -> list[dict[str, Any]]:
    return list(iter_results(path)) if path.is_file() else []


def _context_files(tenant: Tenant, level: Level, cluster: Cluster | None) -> dict[str, str]:
    """What the workspace's context/ holds for this level (the brief lists it)."""
    out: dict[str, str] = {}
    if cluster:
        out["traces.json"] = "train traces of the cluster: each step's output, label, score"
    if level in ("structure", "code"):
        out["transforms.md"] = "the transform catalogue: every kind, its fields, an example"
        out["chain.md"] = "the chain's steps, edges and prompts with their variables"
        out["functions.md"] = "functions the chain registered, usable by transforms"
    out["scorer.py"] = "how outputs are scored (read-only)"
    if tenant.spec.checks:
        out["checks.py"] = "the tenant's step checks (read-only)"
    return out


#: Two evaluated attempts in a row without a gain: measured on the demo tenants, a third
#: variant of the same idea was rejected too, so the brief says so.
PLATEAU_AFTER = 2


def plateau(history: Sequence[dict[str, Any]], level: Level) -> str | None:
    """PLATEAU_RULE when the last PLATEAU_AFTER attempts at `level` were evaluated and
    rejected (no significant gain), else None."""
    n = 0
    for h in reversed(history):
        if h.get("level") != level or h.get("outcome") != Status.REJECTED.value:
            break
        n += 1
    return PLATEAU_RULE.format(n=n) if n >= PLATEAU_AFTER else None


def enrich_history(
    history: Sequence[dict[str, Any]], variants: Path, leak_index: LeakCheck | None
) -> list[dict[str, Any]]:
    """Each earlier attempt with its diff (cut to DIFF_CHARS; withheld when it would reveal
    sealed text) and its per-example effect on val against its parent — as counts only."""
    out = []
    for h in history:
        vid, parent = h.get("variant"), h.get("parent")
        entry = dict(h)
        if vid:
            patch = variants / str(vid) / "diff.patch"
            if patch.is_file():
                entry["diff"] = _safe_diff(patch.read_text(encoding="utf-8"), leak_index)
            if parent:
                effect = val_effect(
                    variants / str(vid) / "eval" / "val" / "results.jsonl",
                    variants / str(parent) / "eval" / "val" / "results.jsonl",
                )
                if effect:
                    entry["val_effect"] = effect
        out.append(entry)
    return out


DIFF_CHARS = 3000


def _safe_diff(diff: str, leak_index: LeakCheck | None) -> str:
    if leak_index is not None:
        added = "\n".join(
            ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")
        )
        if leak_index.leaks(added, ""):
            return "(diff withheld: it copied validation/test text and was blocked for it)"
    if len(diff) > DIFF_CHARS:
        return diff[:DIFF_CHARS] + f"\n[... {len(diff) - DIFF_CHARS} characters cut]\n"
    return diff


def val_effect(candidate: Path, parent: Path) -> dict[str, int] | None:
    """{better, worse, unchanged}: validation examples whose mean score rose, fell or stayed,
    candidate vs. parent. Counts only — never ids, inputs, outputs or labels: the agent must
    not see validation data, and an id chosen by a tenant may name its content (a CVE number,
    a document title)."""
    if not candidate.is_file() or not parent.is_file():
        return None
    a, b = _mean_scores(candidate), _mean_scores(parent)
    counts = {"better": 0, "worse": 0, "unchanged": 0}
    for ex_id in a.keys() & b.keys():
        d = a[ex_id] - b[ex_id]
        counts["better" if d > 1e-9 else "worse" if d < -1e-9 else "unchanged"] += 1
    return counts


def _mean_scores(path: Path) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for rec in iter_results(path):
        scores.setdefault(str(rec["id"]), []).append(float(rec.get("score") or 0.0))
    return {k: sum(v) / len(v) for k, v in scores.items()}


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
        started = time.time()
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


def history_entry(prop: ProposalRecord, decision: DecisionRecord) -> dict[str, Any]:
    """What later briefs are told about this attempt (`Brief.history`)."""
    c = prop.cluster
    return {
        "variant": prop.variant,
        "parent": prop.parent,
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


class AttributionContext:
    """`agent` whose attribute() first lays out the attribution workspace (chain source,
    prompts, scorer, train rows, each step's outputs, the levels: `prepare_attribution`);
    propose and review pass through. Lets the loop brief the attribution role without
    attribute.py knowing the tenant."""

    def __init__(self, agent: Agent, tenant: Tenant, leak_index: LeakCheck | None) -> None:
        self.agent, self.tenant, self.leak_index = agent, tenant, leak_index
        self.name = agent.name
        self.withheld: dict[str, str] = {}

    @property
    def contained(self) -> bool:
        return bool(getattr(self.agent, "contained", False))

    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        return self.agent.propose(brief, workspace)

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        return self.agent.review(request, workspace)

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        self.withheld = prepare_attribution(
            workspace,
            self.tenant,
            steps=list(request.steps),
            levels=list(request.levels),
            failures=list(request.failures),
            level_definitions=LEVEL_DEFINITIONS,
            leak_index=self.leak_index,
        )
        return self.agent.attribute(request, workspace)


def attribution_context(agent: Agent, tenant: Tenant, leak_index: LeakCheck | None) -> Agent:
    """See AttributionContext."""
    return AttributionContext(agent, tenant, leak_index)

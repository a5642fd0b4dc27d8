"""Findings: every denial or refused attempt of an agent, classified and weighed (issue 16).

Agent CLIs report what they were refused in different places (Claude Code: the result's
`permission_denials` and tool results marked `is_error`; Codex: failed tool items and its log).
The adapters normalise those into `Invocation.permission_denials` and `Invocation.refused`; this
module turns both into typed `Finding`s for `proposal.json`, `review.json`, `decision.json` and
the report. An attempt to read sealed data (validation/test splits, run records, the call
cache) blocks the proposal, whether or not the sandbox let it find anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fapo.records import Finding, FindingKind, Invocation, Role, Severity

_WRITE_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit", "apply_patch"}
_PATH_KEYS = ("file_path", "notebook_path", "path", "target")
#: Path parts that name sealed data or the engine's own state, in any tenant.
SEALED_PARTS = frozenset({"runs", ".fapo", "fapo.toml", "cache.sqlite"})
_SEALED_FILE = re.compile(
    r"(^|[/\s'\"=])(val|valid|validation|test|dev)[\w.-]*\.(jsonl|json|csv)\b"
)


def sealed_parts(data_paths: Iterable[str]) -> frozenset[str]:
    """SEALED_PARTS plus the folder and file names of a tenant's data splits (`data`,
    `val.jsonl`, …), from tenant.yaml's `data:` paths."""
    parts: set[str] = set(SEALED_PARTS)
    for rel in data_paths:
        p = Path(rel).parts
        if p:
            parts |= {p[0], p[-1]}
    return frozenset(parts)


def names_sealed(text: str, sealed: frozenset[str]) -> bool:
    """Does a path or command mention sealed data (a sealed path part, or a val/test file)?"""
    if _SEALED_FILE.search(text):
        return True
    tokens = set(re.split(r"[\\/\s'\"=;|&<>()]+", text))
    return bool(tokens & sealed)


def _target(entry: dict[str, Any]) -> str:
    inp = entry.get("tool_input") or {}
    for key in _PATH_KEYS:
        value = inp.get(key) if isinstance(inp, dict) else None
        if value:
            return str(value)
    return str(entry.get("target") or "")


#: The engine names every agent's working folder `workspace` (fapo.propose, fapo.review,
#: fapo.attribute): a path through it is inside, when the workspace itself is not known.
_WORKSPACE_PART = "/workspace/"


def _outside(target: str, workspace: Path | None) -> bool:
    if not target:
        return False
    path = Path(target)
    if workspace is None:
        return path.is_absolute() and _WORKSPACE_PART not in target
    resolved = (path if path.is_absolute() else workspace / path).resolve()
    return not resolved.is_relative_to(workspace.resolve())


def _workspace_of(inv: Invocation) -> Path | None:
    """The working directory an invocation ran in, from its command line (bwrap's `--chdir`,
    Codex's `-C`)."""
    cmd = inv.command
    for flag in ("--chdir", "-C"):
        if flag in cmd and cmd.index(flag) + 1 < len(cmd):
            return Path(cmd[cmd.index(flag) + 1])
    return None


def classify(
    entry: dict[str, Any],
    *,
    role: Role,
    agent: str,
    workspace: Path | None,
    sealed: frozenset[str],
    denied: bool,
) -> Finding:
    """One denial (`denied`) or refused tool call as a Finding."""
    tool = str(entry.get("tool_name") or entry.get("tool") or "tool")
    target = _target(entry)
    what = str(entry.get("detail") or entry.get("error") or "")
    inp = entry.get("tool_input") if isinstance(entry.get("tool_input"), dict) else {}
    command = str(entry.get("command") or inp.get("command") or inp.get("pattern") or "")
    subject = target or command
    detail = (
        f"{tool}: {subject} ({what[:200]})" if subject and what else f"{tool}: {subject or what}"
    )
    write = tool in _WRITE_TOOLS or (tool == "exec_command" and bool(target))
    # A path inside the workspace reveals nothing sealed (the workspace holds none), whatever
    # its folders are called (runs/… when the workspace lives in the run folder).
    text = f"{target if _outside(target, workspace) else ''} {command}"
    if workspace is not None:
        text = text.replace(str(workspace), "")
    if names_sealed(text, sealed):
        kind, severity = FindingKind.SEALED_READ, Severity.BLOCK
    elif write and role != "propose":
        kind, severity = FindingKind.READ_ONLY_EDIT, Severity.WARN
    elif write and (_outside(target, workspace) or "outside" in what):
        kind, severity = FindingKind.OUTSIDE_WRITE, Severity.BLOCK
    elif _outside(target, workspace):
        kind, severity = FindingKind.OUTSIDE_READ, Severity.WARN
    elif denied:
        kind, severity = FindingKind.DENIED, Severity.WARN
    else:
        kind, severity = FindingKind.REFUSED_TOOL, Severity.WARN
    return Finding(
        kind=kind,
        severity=severity,
        role=role,
        agent=agent,
        detail=detail[:400],
        file=target or None,
    )


def of_invocations(
    invocations: Sequence[Invocation], *, workspace: Path | None, sealed: frozenset[str]
) -> list[Finding]:
    """Every denial and refused attempt of `invocations`, in order, without duplicates."""
    out: list[Finding] = []
    for inv in invocations:
        ws = workspace or _workspace_of(inv)
        for entries, denied in ((inv.permission_denials, True), (inv.refused, False)):
            for e in entries:
                if not isinstance(e, dict):
                    e = {"detail": str(e)}
                f = classify(
                    e, role=inv.role, agent=inv.agent, workspace=ws, sealed=sealed,
                    denied=denied,
                )  # fmt: skip
                if f not in out:
                    out.append(f)
    return out


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity is Severity.BLOCK]


def lines(findings: Iterable[Finding]) -> list[str]:
    """One line per finding, for the report."""
    return [f"{f.severity.value} · {f.role} · {f.kind.value}: {f.detail}" for f in findings]


def tenant_sealed(tenant: Any) -> frozenset[str]:
    """`sealed_parts` of a tenant's validation and test files (fapo.tenant.Tenant)."""
    data = tenant.spec.data
    return sealed_parts([data.val, data.test])


def of_review(answer_findings: Iterable[Any], agent: str) -> list[Finding]:
    """The reviewing agent's own findings (fapo.agents.base.ReviewFinding) as Findings."""
    return [
        Finding(
            kind=FindingKind.REVIEW,
            severity=f.severity,
            role="review",
            agent=agent,
            detail=f.issue,
            file=f.file,
        )  # fmt: skip
        for f in answer_findings
    ]


def run_findings(variants: Sequence[dict[str, Any]]) -> list[tuple[str, Finding]]:
    """(where, finding) for a report: each variant's decision findings, then the attribution
    agent's denials and refused attempts (attribution.json's invocations)."""
    out: list[tuple[str, Finding]] = []
    for v in variants:
        for f in (v.get("decision") or {}).get("findings") or []:
            out.append((str(v["id"]), Finding.model_validate(f)))
        agent = (v.get("attribution") or {}).get("agent") or {}
        invs = [Invocation.model_validate(i) for i in agent.get("invocations") or []]
        for f in of_invocations(invs, workspace=None, sealed=SEALED_PARTS):
            out.append((f"{v['id']} attribution", f))
    return out


def report_lines(variants: Sequence[dict[str, Any]]) -> list[str]:
    """The report's findings section (markdown), empty when there is none."""
    rows = run_findings(variants)
    if not rows:
        return []
    out = ["", "## Findings: denials, refused attempts, review findings", ""]
    out += [
        f"- **{where}** · {f.severity.value} · {f.role} ({f.agent}) · {f.kind.value}: "
        + f.detail.replace("\n", " ")[:300]
        for where, f in rows
    ]
    return out

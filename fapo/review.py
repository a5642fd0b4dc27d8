"""Review a proposed change before any evaluation is paid for. Deterministic checks in code first;
an independent reviewing agent may only add a veto. Every check is recorded with its reason."""

from __future__ import annotations

import ast
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fapo.agents.base import Agent, Brief, ReviewRequest
from fapo.artifacts import copy_transcripts, read_files, snapshot, write_json
from fapo.attribute import gold_strings
from fapo.context import placeholders
from fapo.errors import FapoError
from fapo.records import AgentVerdict, Check, Level, ProposalRecord, ReviewRecord
from fapo.tenant import Tenant, in_scope
from fapo.workspace import prepare

__all__ = [
    "Check",
    "LeakIndex",
    "agent_review",
    "review_candidate",
    "review_in_code",
    "verdict",
]

NGRAM = 8
_FORBIDDEN_CALLS = {"eval", "exec", "__import__", "compile"}
_FORBIDDEN_MODULES = {
    "subprocess",
    "socket",
    "ctypes",
    "multiprocessing",
    "shutil",
    "requests",
    "urllib",
    "http",
}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


class LeakIndex:
    """Sealed-split text (val + test) as word n-grams, plus sealed label strings unseen in train."""

    def __init__(self, tenant: Tenant) -> None:
        self.ngrams: set[tuple[str, ...]] = set()
        sealed_labels: set[str] = set()
        for split in ("val", "test"):
            for ex in tenant.examples(split):
                for text in _strings(ex.inputs) + _strings(ex.label):
                    w = _words(text)
                    self.ngrams.update(tuple(w[i : i + NGRAM]) for i in range(len(w) - NGRAM + 1))
                for g in gold_strings(ex.label) or _strings(ex.label):
                    norm = " ".join(_words(g))
                    if len(norm) >= 3:
                        sealed_labels.add(norm)
        train_text = " ".join(
            " ".join(_words(t))
            for ex in tenant.examples("train")
            for t in _strings(ex.inputs) + _strings(ex.label)
        )
        self.labels = {lab for lab in sealed_labels if f" {lab} " not in f" {train_text} "}

    def leaks(self, added: str, original: str) -> list[str]:
        found = []
        w = _words(added)
        grams = {tuple(w[i : i + NGRAM]) for i in range(len(w) - NGRAM + 1)}
        hit = grams & self.ngrams
        if hit:
            found.append("copies sealed text: '" + " ".join(sorted(hit)[0]) + "'")
        norm_added, norm_orig = f" {' '.join(w)} ", f" {' '.join(_words(original))} "
        for lab in sorted(self.labels):
            if f" {lab} " in norm_added and f" {lab} " not in norm_orig:
                found.append(f"contains a validation/test label ('{lab}')")
                break
        return found


def _added_text(old: str | None, new: str) -> str:
    old_lines = set((old or "").splitlines())
    return "\n".join(line for line in new.splitlines() if line not in old_lines)


def _unsafe_code(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"chain.py does not parse (line {exc.lineno})"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            bad = [n for n in names if n.split(".")[0] in _FORBIDDEN_MODULES]
            if bad:
                return f"chain.py imports {bad[0]}"
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FORBIDDEN_CALLS
        ):
            return f"chain.py calls {node.func.id}()"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.search(r"(^|/)data/|scorer\.py|checks\.py", node.value)
        ):
            return f"chain.py references sealed files ('{node.value[:40]}')"
    return None


def review_in_code(
    incumbent: Tenant,
    changes: dict[str, str | None],
    *,
    level: Level,
    stray: list[str],
    outside: list[str],
    immutable_before: dict[str, str],
    leak_index: LeakIndex,
    known: dict[str, str],
) -> list[Check]:
    """All deterministic checks; the candidate is blocked if any fails."""
    from fapo.validate import null_factory

    checks: list[Check] = []
    add = checks.append
    add(Check("changed", bool(changes), "" if changes else "the proposal changed no file"))
    out_of_scope = [r for r in changes if not in_scope(r, level)]
    new_files = [r for r, t in changes.items() if t is not None and r not in incumbent.files]
    deleted = [r for r, t in changes.items() if t is None]
    if level != "structure":
        out_of_scope += new_files
    out_of_scope += [r for r in deleted if not (level == "structure" and r == "structure.yaml")]
    add(
        Check(
            "scope",
            not out_of_scope,
            f"files outside the {level} level's scope: {', '.join(sorted(set(out_of_scope)))}"
            if out_of_scope
            else "",
        )
    )
    add(
        Check(
            "workspace_only",
            not stray,
            f"wrote read-only or non-mutable files: {', '.join(stray)}" if stray else "",
        )
    )
    add(
        Check(
            "outside_writes",
            not outside,
            f"wrote outside the workspace: {', '.join(outside[:5])}" if outside else "",
        )
    )
    now = incumbent.immutable_hashes()
    changed_imm = sorted(
        k for k in set(now) | set(immutable_before) if now.get(k) != immutable_before.get(k)
    )
    add(
        Check(
            "immutable_unchanged",
            not changed_imm,
            f"immutable tenant files changed: {', '.join(changed_imm)}" if changed_imm else "",
        )
    )
    concern = {"prompt": 1, "parameter": 1}.get(level)
    add(
        Check(
            "one_concern",
            concern is None or len(changes) <= concern,
            f"{len(changes)} files changed at {level} level; one proposal = one change"
            if concern is not None and len(changes) > concern
            else "",
        )
    )
    if any(c.name in ("scope", "changed") and not c.passed for c in checks):
        return checks
    variant = incumbent.variant(changes)
    fp = variant.fingerprint()
    add(
        Check(
            "new_variant",
            fp not in known,
            f"identical to {known.get(fp)}, already evaluated" if fp in known else "",
        )
    )
    try:
        variant.params  # noqa: B018 - validates bounds
        add(Check("params_in_bounds", True))
    except FapoError as exc:
        add(Check("params_in_bounds", False, str(exc)))
    dropped = []
    for rel, new in changes.items():
        old = incumbent.files.get(rel)
        if rel.startswith("prompts/") and old is not None and new is not None:
            lost = placeholders(old) - placeholders(new)
            dropped += [f"{rel} dropped {{{p}}}" for p in sorted(lost)]
    add(Check("placeholders_intact", not dropped, "; ".join(dropped)))
    if "chain.py" in changes and changes["chain.py"] is not None:
        unsafe = _unsafe_code(changes["chain.py"])
        add(Check("safe_code", unsafe is None, unsafe or ""))
    try:
        variant.build(null_factory(dict(variant.spec.models)))
        add(Check("builds", True))
    except FapoError as exc:
        add(Check("builds", False, str(exc)))
    leaks = []
    for rel, new in changes.items():
        if new is None:
            continue
        old = incumbent.files.get(rel) or ""
        leaks += [f"{rel}: {m}" for m in leak_index.leaks(_added_text(old, new), old)]
    add(Check("no_sealed_leakage", not leaks, "; ".join(leaks)))
    return checks


# -- the agent half and the stage's record -------------------------------------------------------


def agent_review(
    agent: Agent,
    candidate: Tenant,
    *,
    level: Level,
    diff: str,
    rationale: str,
    rules: Sequence[str],
    transcripts: Path,
) -> AgentVerdict:
    """Ask `agent` to review `diff` in a read-only workspace of the candidate. A reviewer that
    fails or modifies its workspace vetoes; its transcripts are copied to `transcripts`."""
    req = ReviewRequest(
        tenant=candidate.name, level=level, diff=diff, scope_rules=list(rules), rationale=rationale
    )
    brief = Brief(
        tenant=candidate.name,
        level=level,
        objective="Review the diff.",
        scores={},
        cluster=None,
        traces=[],
        allowed_files=[],
    )
    with tempfile.TemporaryDirectory(prefix="fapo-review-") as tmp:
        ws = Path(tmp) / "workspace"
        prepare(ws, candidate, level, brief, {"diff.patch": diff})
        before = snapshot(ws)
        v = agent.review(req, ws)
        touched = sorted(set(snapshot(ws).items()) ^ set(before.items()))
        copy_transcripts(Path(tmp), transcripts)
    return AgentVerdict(
        approve=v.approve and not v.failure and not touched,
        reasons=v.reasons
        + ([f"reviewer failed: {v.failure}"] if v.failure else [])
        + (["the read-only reviewer modified its workspace"] if touched else []),
        invocations=list(v.invocations),
    )


def verdict(checks: list[Check], agent: AgentVerdict | None) -> ReviewRecord:
    """Blocked if any check failed or the reviewing agent vetoed."""
    blocked = any(not c.passed for c in checks) or (agent is not None and not agent.approve)
    return ReviewRecord(blocked=blocked, checks=checks, agent_verdict=agent)


def review_candidate(
    agent: Agent,
    incumbent: Tenant,
    prop: ProposalRecord,
    *,
    files: Path,
    immutable: dict[str, str],
    leaks: LeakIndex,
    known: dict[str, str],
    rules: Sequence[str],
) -> ReviewRecord:
    """The review stage: every check in code, then (only if all pass) the reviewing agent.
    `files` is the candidate's variant folder (`files/`, `diff.patch`); writes `review.json`."""
    stored = read_files(files / "files") or dict(incumbent.files)
    changes: dict[str, str | None] = {r: stored.get(r) for r in prop.changes}
    checks = review_in_code(
        incumbent,
        changes,
        level=prop.level,
        stray=prop.stray,
        outside=prop.outside,
        immutable_before=immutable,
        leak_index=leaks,
        known=known,
    )
    agent_part = None
    if all(c.passed for c in checks):
        agent_part = agent_review(
            agent,
            incumbent.variant(changes),
            level=prop.level,
            diff=(files / "diff.patch").read_text(encoding="utf-8"),
            rationale=prop.rationale,
            rules=rules,
            transcripts=files / "review-agent",
        )
    review = verdict(checks, agent_part)
    write_json(files / "review.json", review.model_dump(mode="json"))
    return review

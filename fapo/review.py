"""Review a proposed change before any evaluation is paid for. Deterministic checks in code first;
an independent reviewing agent may only add a veto. Every check is recorded with its reason."""

from __future__ import annotations

import ast
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fapo import findings as findings_mod
from fapo.agents.base import Agent, Brief, ReviewRequest
from fapo.artifacts import copy_transcripts, read_files, read_json, snapshot, write_json
from fapo.candidate import build_in_sandbox, is_candidate_code
from fapo.context import placeholders
from fapo.errors import FapoError
from fapo.gold import gold_strings
from fapo.joint import JOINT_LEVEL, joint_problem, read_records
from fapo.records import (
    AgentVerdict,
    Check,
    Cluster,
    DecisionRecord,
    Finding,
    Level,
    ProposalRecord,
    ReviewRecord,
)
from fapo.tenant import Tenant, in_scope, is_mutable, own_scope
from fapo.workspace import LeakCheck, allowed_files, prepare

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
    "pty",
    "importlib",
    "pickle",
    "marshal",
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
                # every label string, not only what attribution takes for the answer: sealing
                # errs on the side of watching more (gold_strings may pick one field of a dict)
                for g in {*gold_strings(ex.label), *_strings(ex.label)}:
                    norm = " ".join(_words(g))
                    if len(norm) >= 3:
                        sealed_labels.add(norm)
        train_text = " ".join(
            " ".join(_words(t))
            for ex in tenant.examples("train")
            for t in _strings(ex.inputs) + _strings(ex.label)
        )
        # Phrasing train shares with the sealed splits (question templates such as "in what
        # year was the founder of the") reveals nothing sealed: only sealed-only n-grams count.
        tw = train_text.split()
        self.ngrams -= {tuple(tw[i : i + NGRAM]) for i in range(len(tw) - NGRAM + 1)}
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


#: Calls that start processes or replace the interpreter, by attribute or bare name.
_SPAWN_CALLS = re.compile(
    r"^(system|popen|exec[lv]p?e?|spawn[lv]p?e?|posix_spawnp?|fork|forkpty|kill|startfile)$"
)
#: Attributes that walk from any object to builtins, frames or loaded modules.
_INTROSPECTION = {
    "__dict__", "__globals__", "__subclasses__", "__code__", "__builtins__", "__import__",
    "__bases__", "__mro__", "__class__", "f_globals", "f_locals", "f_back", "gi_frame", "modules",
}  # fmt: skip
#: Constants that name the sealed side of a tenant or project state, as a path part.
_SEALED_PARTS = {"scorer.py", "checks.py", ".fapo", "fapo.toml", "cache.sqlite", "runs", ".."}


def _sealed_names(tenant: Tenant | None) -> set[str]:
    """Path parts of the tenant's data files, scorer and checks: `data`, `val.jsonl`, `scorer`…"""
    names = set(_SEALED_PARTS)
    if tenant is None:
        return names | {"data"}
    spec = tenant.spec
    for rel in [*(getattr(spec.data, s, None) for s in ("train", "val", "test")), spec.scorer]:
        if rel:
            parts = Path(rel).parts
            names |= {parts[0], parts[-1], Path(parts[-1]).stem}
    if spec.checks:
        names |= {spec.checks, Path(spec.checks).stem}
    return {n for n in names if n}


def _unsafe_code(source: str, tenant: Tenant | None = None) -> str | None:
    """Why chain code may not run: imports or calls that spawn processes, evaluate code or
    reach the environment, or constants naming sealed files (even built up with `/`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return f"chain.py does not parse (line {exc.lineno})"
    sealed = _sealed_names(tenant)
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
        if isinstance(node, ast.Call):
            fn = node.func
            name = (
                fn.id
                if isinstance(fn, ast.Name)
                else fn.attr
                if isinstance(fn, ast.Attribute)
                else ""
            )
            if isinstance(fn, ast.Name) and name in _FORBIDDEN_CALLS:
                return f"chain.py calls {name}()"
            if _SPAWN_CALLS.match(name):
                return f"chain.py starts a process ({name}())"
            if name in ("getenv", "putenv", "unsetenv"):
                return f"chain.py reads the environment ({name}())"
            if name in ("getattr", "setattr", "delattr") and not (
                len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
            ):
                return f"chain.py uses {name}() with a computed name"
            if isinstance(fn, ast.Name) and name in ("globals", "locals", "vars", "breakpoint"):
                return f"chain.py calls {name}()"
        if isinstance(node, ast.Name) and node.id in ("__builtins__", "__loader__", "__spec__"):
            return f"chain.py uses {node.id}"
        if isinstance(node, ast.Attribute) and node.attr in _INTROSPECTION:
            return f"chain.py reaches interpreter internals (.{node.attr})"
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "environb"):
            return "chain.py reads the environment (os.environ)"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            value = node.value
            parts = set(re.split(r"[\\/]", value))
            if re.search(r"(^|/)data/|scorer\.py|checks\.py", value) or parts & sealed:
                return f"chain.py references sealed files ('{value[:40]}')"
    return None


MAX_FILE_BYTES = 256 * 1024  # a prompt far larger than any demo's (< 2 KB) is no prompt


def oversized_or_binary(changes: dict[str, str | None], invalid: Iterable[str] = ()) -> list[str]:
    """Changed files over MAX_FILE_BYTES, or not valid UTF-8 (`invalid`, found on disk)."""
    found = [f"{rel}: not valid UTF-8" for rel in sorted(set(invalid))]
    for rel, text in sorted(changes.items()):
        if text is not None and len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
            found.append(f"{rel}: over {MAX_FILE_BYTES // 1024} KB")
    return found


_KEY_NAME = re.compile(r"(_KEY|_TOKEN|_SECRET|_PASSWORD)$|^(API_KEY|TOKEN)$", re.I)


def key_values(env: Mapping[str, str], names: Iterable[str] = ()) -> dict[str, str]:
    """{variable: value} of every known key: *_KEY (so *_API_KEY), *_TOKEN… and the configured
    `api_key_env` names. Short values (< 8 chars) are too likely to occur by chance."""
    wanted = {k for k in env if _KEY_NAME.search(k)} | {n for n in names if n in env}
    return {k: env[k] for k in sorted(wanted) if len(env[k]) >= 8}


def redact_keys(
    changes: dict[str, str | None], keys: Mapping[str, str]
) -> tuple[dict[str, str | None], list[str]]:
    """(changes with every key value replaced, `contains_keys` hits): a proposal holding a key
    is blocked, and the key never reaches the run's records."""
    hits = contains_keys(changes, keys)
    if not hits:
        return changes, []
    clean: dict[str, str | None] = {}
    for rel, text in changes.items():
        for value in sorted(keys.values(), key=len, reverse=True):
            text = text.replace(value, "[REDACTED]") if text else text
        clean[rel] = text
    return clean, hits


def contains_keys(changes: dict[str, str | None], keys: Mapping[str, str]) -> list[str]:
    """`file: $VAR` for each changed file holding a key's value (named, never quoted)."""
    return [
        f"{rel}: holds the value of ${name}"
        for rel, text in sorted(changes.items())
        if text
        for name, value in keys.items()
        if value in text
    ]


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
    invalid: Iterable[str] = (),
    keys: Mapping[str, str] | None = None,
    build: Callable[[Tenant], str | None] | None = None,
    key_hits: Iterable[str] = (),
    parent_records: Path | None = None,
) -> list[Check]:
    """All deterministic checks; the candidate is blocked if any fails.

    `invalid`: changed files that were not UTF-8 on disk; `keys`: {variable: value} of known
    keys (default: `key_values(os.environ)`); `key_hits`: keys found (and redacted) before the
    changes were recorded, see `redact_keys`; `build`: how to build a variant whose chain.py
    changed (the sandboxed worker; None = in-process, for the tenant's own chain only);
    `parent_records`: the incumbent's train results, which bind a joint candidate's key and
    prompt to one step (without them a joint candidate is refused). Nothing of a candidate runs
    unless every earlier check passed."""
    from fapo.validate import null_factory

    checks: list[Check] = []
    add = checks.append
    add(Check("changed", bool(changes), "" if changes else "the proposal changed no file"))
    bad_files = oversized_or_binary(changes, invalid)
    add(Check("size_and_encoding", not bad_files, "; ".join(bad_files)))
    key_hits = [
        *key_hits,
        *contains_keys(changes, key_values(os.environ) if keys is None else keys),
    ]
    add(Check("no_keys", not key_hits, "; ".join(key_hits)))
    out_of_scope = [r for r in changes if not in_scope(r, level)]
    new_files = [r for r, t in changes.items() if t is not None and r not in incumbent.files]
    deleted = [r for r, t in changes.items() if t is None]
    if level not in ("structure", "code"):
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
    # Tampering already put back from the run's snapshot still counts (it shows in `outside`).
    root = incumbent.root.resolve()
    for hit in outside:
        p = Path(hit.rstrip("/"))
        if p.is_absolute() and p.is_relative_to(root) and p != root:
            rel = p.relative_to(root).as_posix()
            if not is_mutable(rel) and rel not in changed_imm:
                changed_imm.append(f"{rel} (reverted)")
    add(
        Check(
            "immutable_unchanged",
            not changed_imm,
            f"immutable tenant files changed: {', '.join(changed_imm)}" if changed_imm else "",
        )
    )
    add(_one_concern(incumbent, changes, level, parent_records))
    if any(c.name in ("scope", "changed", "size_and_encoding") and not c.passed for c in checks):
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
    code_changed = "chain.py" in changes and changes["chain.py"] is not None
    if code_changed:
        unsafe = _unsafe_code(changes["chain.py"] or "", incumbent)
        add(Check("safe_code", unsafe is None, unsafe or ""))
    leaks = []
    for rel, new in changes.items():
        if new is None:
            continue
        old = incumbent.files.get(rel) or ""
        leaks += [f"{rel}: {m}" for m in leak_index.leaks(_added_text(old, new), old)]
    add(Check("no_sealed_leakage", not leaks, "; ".join(leaks)))
    if any(not c.passed for c in checks):
        # Nothing of a blocked candidate runs: the build check (which imports chain.py) is
        # skipped, and so recorded.
        return checks
    if build is not None and (code_changed or is_candidate_code(variant)):  # sealing: any
        problem = build(variant)  # candidate chain.py is built in the worker, never here
    else:
        try:
            variant.build(null_factory(dict(variant.spec.models)))
            problem = None
        except FapoError as exc:
            problem = str(exc)
    add(Check("builds", problem is None, problem or ""))
    return checks


def _one_concern(
    incumbent: Tenant, changes: dict[str, str | None], level: Level, records: Path | None
) -> Check:
    """One proposal = one change: one file at the prompt level; at the parameter level
    params.yaml, or a joint candidate (one key and one prompt of the same step, fapo/joint.py)."""
    concern = {"prompt": 1, "parameter": 1}.get(level)
    if concern is None or len(changes) <= concern and all(own_scope(r, level) for r in changes):
        return Check("one_concern", True)
    if level == JOINT_LEVEL:
        problem = joint_problem(incumbent, changes, read_records(records))
        return Check("one_concern", problem is None, problem or "")
    return Check(
        "one_concern",
        False,
        f"{len(changes)} files changed at {level} level; one proposal = one change",
    )


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
    scratch: Path | None = None,
    parent: Tenant | None = None,
    parent_id: str = "",
    cluster: Cluster | None = None,
    leak_index: LeakCheck | None = None,
) -> AgentVerdict:
    """Ask `agent` to review `diff` in a read-only workspace of the candidate: the changed
    files, the parent's versions under `parent/`, BRIEF.md with the allowed files, the scope
    rules and the cluster the change targets, and the diff. Tenant files copied in pass
    `leak_index` like the proposer's. A reviewer that fails or modifies its workspace vetoes;
    its transcripts are copied to `transcripts`."""
    base = parent or candidate
    allowed = allowed_files(base, level)
    req = ReviewRequest(
        tenant=candidate.name, level=level, diff=diff, scope_rules=list(rules), rationale=rationale,
        allowed_files=allowed, cluster=cluster, parent=parent_id,
    )  # fmt: skip
    brief = Brief(
        tenant=candidate.name,
        level=level,
        role="review",
        objective=(
            "Review the proposed change (diff.patch in context/, the changed files in place, "
            "the parent's versions under parent/) against the allowed files, the scope rules "
            "and the failure cluster it targets. Do not edit anything."
        ),
        scores={},
        cluster=cluster,
        traces=[],
        allowed_files=allowed,
        rules=list(rules),
    )
    changed = sorted(
        r for r in {*candidate.files, *base.files} if candidate.files.get(r) != base.files.get(r)
    )
    parent_files = {f"parent/{r}": base.files[r] for r in changed if r in base.files}
    with tempfile.TemporaryDirectory(prefix="fapo-review-", dir=scratch) as tmp:
        ws = Path(tmp) / "workspace"
        prepare(ws, candidate, level, brief, {"diff.patch": diff}, leak_index=leak_index)
        for rel, text in parent_files.items():
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            (ws / rel).write_text(text, encoding="utf-8")
            (ws / rel).chmod(0o444)
        before = snapshot(ws)
        v = agent.review(req, ws)
        touched = sorted(set(snapshot(ws).items()) ^ set(before.items()))
        copy_transcripts(Path(tmp), transcripts)
    findings = findings_mod.of_invocations(
        v.invocations, workspace=ws, sealed=findings_mod.tenant_sealed(base)
    ) + findings_mod.of_review(v.findings, agent.name)
    return AgentVerdict(
        approve=v.approve and not v.failure and not touched,
        reasons=v.reasons
        + ([f"reviewer failed: {v.failure}"] if v.failure else [])
        + (["the read-only reviewer modified its workspace"] if touched else []),
        invocations=list(v.invocations),
        inspected=list(v.inspected),
        findings=findings,
    )


def verdict(
    checks: list[Check], agent: AgentVerdict | None, proposal_findings: Sequence[Finding] = ()
) -> ReviewRecord:
    """Blocked if any check failed, the reviewing agent vetoed or a finding blocks. The
    record's findings are the proposer's denials and refused attempts, then the reviewer's."""
    findings = [*proposal_findings, *(agent.findings if agent else [])]
    blocked = (
        any(not c.passed for c in checks)
        or (agent is not None and not agent.approve)
        or bool(findings_mod.blocking(proposal_findings))
    )
    return ReviewRecord(blocked=blocked, checks=checks, agent_verdict=agent, findings=findings)


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
    scratch: Path | None = None,
    keys: Mapping[str, str] | None = None,
    build: Callable[[Tenant], str | None] | None = build_in_sandbox,
    parent_records: Path | None = None,
) -> ReviewRecord:
    """The review stage: every check in code, then (only if all pass) the reviewing agent.
    `files` is the candidate's variant folder (`files/`, `diff.patch`); writes `review.json`.
    `parent_records`: the incumbent's train results (binds a joint candidate to one step)."""
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
        invalid=prop.invalid,
        keys=keys,
        build=build,
        key_hits=prop.key_hits,
        parent_records=parent_records,
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
            scratch=scratch,
            parent=incumbent,
            parent_id=prop.parent,
            cluster=prop.cluster,
            leak_index=leaks,
        )
    review = verdict(checks, agent_part, prop.findings)
    write_json(files / "review.json", review.model_dump(mode="json"))
    return review


def record_findings(decision: DecisionRecord, prop: ProposalRecord, vdir: Path) -> DecisionRecord:
    """`decision` carrying every denial and refused attempt of the proposal and its review
    (issue 16). A proposal that never reached review but has findings gets a `review.json`
    holding them (blocked, no checks run), so review.json, decision.json and the report agree."""
    path = vdir / "review.json"
    if path.is_file():
        findings = ReviewRecord.model_validate(read_json(path)).findings
    else:
        findings = list(prop.findings)
        if findings:
            record = ReviewRecord(blocked=True, checks=[], findings=findings)
            write_json(path, record.model_dump(mode="json"))
    if not findings:
        return decision
    return decision.model_copy(update={"findings": list(findings)})

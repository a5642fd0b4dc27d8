"""The agent's workspace: only the incumbent's mutable files for one level, read-only context and
the brief. Built from train evidence only — no validation or test input or label enters it.

After the agent returns, `collect` reads what changed from disk (never from the agent's claims).
"""

from __future__ import annotations

import difflib
import json
import shutil
import stat
from pathlib import Path
from typing import Any, Protocol

from fapo.agents.base import Brief
from fapo.artifacts import snapshot
from fapo.records import Level
from fapo.tenant import Tenant, in_scope, is_mutable

ENGINE_FILES = ("BRIEF.md", "brief.json")
CONTEXT = "context"
#: Immutable tenant files given as read-only context (never data/, never anything with labels).
CONTEXT_FILES = ("scorer.py", "checks.py", "tenant.yaml", "README.md")


def allowed_files(tenant: Tenant, level: Level) -> list[str]:
    files = [rel for rel in sorted(tenant.files) if in_scope(rel, level)]
    if level == "structure" and "structure.yaml" not in files:
        files.append("structure.yaml")
    if level in ("structure", "code"):
        files.append("prompts/<new>.md")
    return files


class LeakCheck(Protocol):
    """What `prepare` needs of review.LeakIndex: the reasons a text would leak sealed data."""

    def leaks(self, added: str, original: str) -> list[str]: ...


def prepare(
    ws: Path,
    tenant: Tenant,
    level: Level,
    brief: Brief,
    extra_context: dict[str, str],
    leak_index: LeakCheck | None = None,
) -> dict[str, str]:
    """Lay out a fresh workspace from an explicit allow-list: the variant's mutable files (in
    scope at the top, the rest under context/), CONTEXT_FILES, `extra_context` (context-relative
    name -> text) and the brief. With `leak_index`, every immutable file copied from the tenant
    (CONTEXT_FILES) that would reveal sealed (validation/test) text stays out — demo-qa's
    README did (val and test questions with answers). The brief and `extra_context` are built by the engine from train
    evidence only and are not re-checked: train traces quote corpus passages that mention val
    answers (e.g. a year) without revealing which question they answer. Returns {withheld
    file: why}, for the record."""
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    # The variant's own files are always there: they are what the agent edits, every earlier
    # change to them passed review's leak check, and the original ones are the tenant author's
    # (demo-instructions' params.yaml `max_tokens: 100` matched a sealed label '100').
    for rel, text in tenant.files.items():
        target = ws / rel if in_scope(rel, level) else ws / CONTEXT / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    wanted: dict[Path, tuple[str, str]] = {}  # immutable tenant files: target -> (text, name)
    for rel in CONTEXT_FILES:
        src = tenant.root / rel
        if src.is_file() and not src.is_symlink():
            try:
                wanted[ws / CONTEXT / rel] = (src.read_text(encoding="utf-8"), rel)
            except UnicodeDecodeError:
                continue  # not text: never copied
    withheld: dict[str, str] = {}
    for target, (text, name) in wanted.items():
        why = leak_index.leaks(text, "") if leak_index is not None else []
        if why:
            withheld[name] = why[0]
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for rel, text in extra_context.items():
        (ws / CONTEXT / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / CONTEXT / rel).write_text(text, encoding="utf-8")
    brief = visible_brief(brief, withheld)
    (ws / "BRIEF.md").write_text(brief.to_markdown(), encoding="utf-8")
    (ws / "brief.json").write_text(brief.model_dump_json(indent=2), encoding="utf-8")
    for p in (ws / CONTEXT).rglob("*"):
        if p.is_file():
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return withheld


def visible_brief(brief: Brief, withheld: dict[str, str]) -> Brief:
    """`brief` without the context files that were withheld (it lists only what is there)."""
    if not withheld:
        return brief
    kept = {k: v for k, v in brief.context_files.items() if k not in withheld}
    return brief.model_copy(update={"context_files": kept})


def collect(
    ws: Path, before: dict[str, str], tenant: Tenant
) -> tuple[dict[str, str | None], list[str]]:
    """(changes to mutable files, stray writes). Stray = anything else the agent touched."""
    after = snapshot(ws)
    changes: dict[str, str | None] = {}
    stray: list[str] = []
    for rel in sorted(set(before) | set(after)):
        if before.get(rel) == after.get(rel) or rel in ENGINE_FILES:
            continue
        if rel.startswith(CONTEXT + "/") or not is_mutable(rel):
            stray.append(rel)
            continue
        if rel in after:
            text = (ws / rel).read_text(encoding="utf-8", errors="replace")
            if tenant.files.get(rel) != text:
                changes[rel] = text
        elif rel in tenant.files:
            changes[rel] = None
    return changes, stray


def undecodable(ws: Path, changes: dict[str, str | None]) -> list[str]:
    """Changed files whose bytes on disk are not valid UTF-8 (collect() reads them replaced)."""
    bad = []
    for rel, text in changes.items():
        if text is None:
            continue
        try:
            (ws / rel).read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            bad.append(rel)
        except OSError:
            continue
    return sorted(bad)


def unified_diff(old: dict[str, str], new: dict[str, str]) -> str:
    out: list[str] = []
    for rel in sorted(set(old) | set(new)):
        a, b = old.get(rel), new.get(rel)
        if a == b:
            continue
        out.extend(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"a/{rel}" if a is not None else "/dev/null",
                tofile=f"b/{rel}" if b is not None else "/dev/null",
            )
        )
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
    return "".join(out)


def context_listing(functions: dict[str, Any]) -> str:
    """Registered functions, for structural proposals (name and first docstring line)."""
    lines = ["# Functions the chain registered (usable in structure.yaml transforms)", ""]
    for name, fn in sorted(functions.items()):
        doc = (getattr(fn, "__doc__", None) or "").strip().splitlines()
        lines.append(f"- `{name}`: {doc[0] if doc else ''}")
    return "\n".join(lines) + "\n"


# -- the attribution role's workspace (briefs: issue 16) -----------------------------------------

TRAIN_ROWS = 3  # a few rows show the data's shape; the failures themselves are in failures.json


def prepare_attribution(
    ws: Path,
    tenant: Tenant,
    *,
    steps: list[str],
    levels: list[Level],
    failures: list[dict[str, Any]],
    level_definitions: dict[str, str],
    leak_index: LeakCheck | None = None,
) -> dict[str, str]:
    """Lay out the attribution workspace: the chain's source and prompts (the variant's own
    files, like the proposer's), scorer and checks (leak-checked, as in `prepare`), a few
    train rows, `failures.json`, `steps.md` (each step's output for every failure) and
    `ATTRIBUTION.md` (the steps, the levels and what each means). Returns {withheld: why}."""
    ws.mkdir(parents=True, exist_ok=True)
    for rel, text in tenant.files.items():
        if (
            rel == "chain.py"
            or rel.startswith("prompts/")
            or rel in ("params.yaml", "structure.yaml")
        ):
            _write(ws / rel, text)
    withheld: dict[str, str] = {}
    for rel in ("scorer.py", "checks.py"):
        src = tenant.root / rel
        if not src.is_file() or src.is_symlink():
            continue
        try:
            text = src.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        why = leak_index.leaks(text, "") if leak_index is not None else []
        if why:
            withheld[rel] = why[0]
        else:
            _write(ws / rel, text)
    rows = []
    for ex in tenant.examples("train"):
        line = json.dumps({"id": ex.id, "inputs": ex.inputs, "label": ex.label}, default=str)
        if leak_index is None or not leak_index.leaks(line, ""):
            rows.append(line)
        if len(rows) >= TRAIN_ROWS:
            break
    _write(ws / "train_rows.jsonl", "\n".join(rows) + "\n")
    _write(ws / "failures.json", json.dumps(failures, indent=2, default=str))
    _write(ws / "steps.md", steps_markdown(steps, failures))
    files = sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file())
    lines = [
        f"# Attribution: tenant `{tenant.name}`",
        "",
        "Find, for the training failures in failures.json, the step that causes each and the",
        "cheapest level that can fix it. Everything here is training data or the chain's own",
        "files; nothing from validation or test.",
        "",
        f"Steps, in order: {' → '.join(f'`{s}`' for s in steps)}",
        "",
        "## The levels",
        "",
        *[f"- `{lv}`: {level_definitions[lv]}" for lv in levels],
        "",
        "## Files",
        "",
        *[f"- `{f}`" for f in [*files, "ATTRIBUTION.md"]],
        "",
    ]
    _write(ws / "ATTRIBUTION.md", "\n".join(lines))
    return withheld


def steps_markdown(steps: list[str], failures: list[dict[str, Any]]) -> str:
    """Each failure's steps, in order, with what each step output (train traces only)."""
    lines = ["# Each step's output, per failure", ""]
    for f in failures:
        lines += [f"## {f.get('id')} (score {f.get('score')})", ""]
        by_step = {s.get("step"): s for s in f.get("steps") or [] if isinstance(s, dict)}
        for name in [*steps, *(s for s in by_step if s not in steps)]:
            s = by_step.get(name)
            if s is None:
                continue
            out = s.get("error") or s.get("update")
            lines.append(f"- `{name}`: {str(out)[:600]}")
        lines.append("")
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

"""The agent's workspace: only the incumbent's mutable files for one level, read-only context and
the brief. Built from train evidence only — no validation or test input or label enters it.

After the agent returns, `collect` reads what changed from disk (never from the agent's claims).
"""

from __future__ import annotations

import difflib
import shutil
import stat
from pathlib import Path
from typing import Any

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
    if level == "structure":
        files.append("prompts/<new>.md")
    return files


def prepare(
    ws: Path, tenant: Tenant, level: Level, brief: Brief, extra_context: dict[str, str]
) -> None:
    """Lay out a fresh workspace. `extra_context` maps context-relative names to text."""
    if ws.exists():
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    for rel, text in tenant.files.items():
        target = ws / rel if in_scope(rel, level) else ws / CONTEXT / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    for rel in CONTEXT_FILES:
        src = tenant.root / rel
        if src.is_file():
            (ws / CONTEXT / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, ws / CONTEXT / rel)
    for rel, text in extra_context.items():
        (ws / CONTEXT / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / CONTEXT / rel).write_text(text, encoding="utf-8")
    (ws / "BRIEF.md").write_text(brief.to_markdown(), encoding="utf-8")
    (ws / "brief.json").write_text(brief.model_dump_json(indent=2), encoding="utf-8")
    for p in (ws / CONTEXT).rglob("*"):
        if p.is_file():
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


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

"""`fapo promote`: write a run's chosen variant back into the tenant folder as a plain file change.

The result is an ordinary edit of prompts/params/chain the user reviews with `git diff` and commits;
nothing else is touched. It refuses when the tenant changed since the run started (the variant was
measured against the old files), unless forced.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fapo.artifacts import read_files, read_json, write_json
from fapo.errors import FapoError
from fapo.settings import Settings


@dataclass
class PromoteResult:
    run_dir: Path
    variant: str
    tenant_root: Path
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    diff: str = ""
    decision: dict[str, Any] | None = None
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "variant": self.variant,
            "tenant_root": str(self.tenant_root),
            "written": self.written,
            "deleted": self.deleted,
            "decision": (self.decision or {}).get("status"),
            "forced": self.forced,
            "diff": self.diff,
        }


def best_variant(run_dir: Path, info: dict[str, Any]) -> str:
    """The run's final variant, or the last accepted one of an unfinished run."""
    if info.get("best"):
        return str(info["best"])
    best = "v000"
    for vdir in sorted((run_dir / "variants").glob("v*")):
        d = vdir / "decision.json"
        if d.is_file() and read_json(d).get("status") == "accepted":
            best = vdir.name
    return best


def variant_files(run_dir: Path, vid: str) -> dict[str, str]:
    """A variant's complete mutable files, verified against their hash manifest."""
    vdir = run_dir / "variants" / vid
    if not vdir.is_dir():
        known = ", ".join(p.name for p in sorted((run_dir / "variants").glob("v*")))
        raise FapoError(f"run {run_dir.name} has no variant '{vid}' (it has: {known or 'none'})")
    files = read_files(vdir / "files")
    if files is None:
        why = (
            "it made no change (see its decision.json)"
            if not (vdir / "files").exists()
            else "its files do not match MANIFEST.json (edited or corrupted)"
        )
        raise FapoError(f"{vdir}: no usable files to use: {why}; pick another variant")
    return files


def changed_since_run(
    info: dict[str, Any],
    current_immutable: dict[str, str],
    current_mutable: dict[str, str],
    base_files: dict[str, str],
) -> list[str]:
    """Tenant files that differ from what the run started with (immutable by hash, mutable by text)."""
    recorded = info.get("immutable") or {}
    changed = [
        k
        for k in sorted(set(recorded) | set(current_immutable))
        if recorded.get(k) != current_immutable.get(k)
    ]
    changed += [
        k
        for k in sorted(set(base_files) | set(current_mutable))
        if base_files.get(k) != current_mutable.get(k)
    ]
    return changed


def _write_keeping_mode(path: Path, text: str) -> None:
    """Atomic write that keeps the file's permissions (a tenant file is the user's, not an artifact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def promote(
    run_dir: Path,
    variant: str | None = None,
    *,
    force: bool = False,
    settings: Settings | None = None,
    dry_run: bool = False,
) -> PromoteResult:
    """Make the tenant's mutable files those of `variant` (default: the run's final one)."""
    from fapo.tenant import load_tenant
    from fapo.workspace import unified_diff

    info = read_json(run_dir / "run.json")
    vid = variant or best_variant(run_dir, info)
    files = variant_files(run_dir, vid)
    base = variant_files(run_dir, "v000")
    root = Path(info["root"])
    if not (root / "tenant.yaml").is_file():
        raise FapoError(f"tenant folder {root} of run {info['run_id']} is gone; restore it first")
    tenant = load_tenant(root, settings)
    current = dict(tenant.files)
    # A mutable file the variant lacks is removed when this run knew it (the baseline or another
    # variant had it, e.g. a structure.yaml); a file the user added since is left alone.
    known = set(base)
    for manifest in (run_dir / "variants").glob("v*/files/MANIFEST.json"):
        known |= set(read_json(manifest))
    removed = sorted(k for k in current if k not in files and k in known)
    if all(current.get(k) == v for k, v in files.items()) and not removed:
        return PromoteResult(run_dir, vid, root)  # already promoted: nothing to do
    changed = changed_since_run(info, tenant.immutable_hashes(), current, base)
    if changed and not force:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise FapoError(
            f"tenant {info['tenant']} changed since run {info['run_id']} started "
            f"({', '.join(changed[:3])}{more}); the variant was measured against the old "
            "files: commit or revert those changes, start a new run, or pass --force"
        )
    target = {k: v for k, v in current.items() if k not in removed}
    target.update(files)
    decision_path = run_dir / "variants" / vid / "decision.json"
    result = PromoteResult(
        run_dir,
        vid,
        root,
        forced=bool(changed and force),
        decision=read_json(decision_path) if decision_path.is_file() else None,
    )
    result.diff = unified_diff(current, target)
    result.written = sorted(k for k, v in files.items() if current.get(k) != v)
    result.deleted = removed
    if dry_run or (not result.written and not result.deleted):
        return result
    for rel in result.written:
        _write_keeping_mode(root / rel, files[rel])
    for rel in removed:
        (root / rel).unlink()
    log = run_dir / "promotions.json"
    history = read_json(log) if log.is_file() else []
    history.append(
        {
            "variant": vid,
            "at": time.time(),
            "tenant_root": str(root),
            "written": result.written,
            "deleted": removed,
            "forced": result.forced,
        }
    )
    write_json(log, history)
    return result

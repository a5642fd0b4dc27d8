"""Atomic file writes (temp file + rename) and hash manifests, so a kill never leaves half a record."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_text(text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def write_files(folder: Path, files: Mapping[str, str]) -> dict[str, str]:
    """Write a variant's files and then its manifest (last, so a manifest means complete)."""
    manifest = {}
    for rel, text in sorted(files.items()):
        write_text(folder / rel, text)
        manifest[rel] = sha256_text(text)
    write_json(folder / "MANIFEST.json", manifest)
    return manifest


def read_files(folder: Path) -> dict[str, str] | None:
    """The files written by `write_files`, or None when the manifest is missing or a hash differs."""
    mpath = folder / "MANIFEST.json"
    if not mpath.is_file():
        return None
    manifest = read_json(mpath)
    files = {}
    for rel, digest in manifest.items():
        p = folder / rel
        if not p.is_file():
            return None
        text = p.read_text(encoding="utf-8")
        if sha256_text(text) != digest:
            return None
        files[rel] = text
    return files


def snapshot(root: Path) -> dict[str, str]:
    """`{relative path: sha256}` of every file under `root` (symlinks by their target text)."""
    result: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            try:
                if path.is_symlink():
                    result[rel] = "link:" + os.readlink(path)
                else:
                    result[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                result[rel] = "unreadable"
    return result


def copy_transcripts(src: Path, dest: Path) -> None:
    """Keep an agent's `*.jsonl` transcripts from a temporary workspace parent in the run folder."""
    import shutil

    for p in src.glob("*.jsonl"):
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest / p.name)

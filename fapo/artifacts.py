"""Atomic file writes (temp file + rename) and hash manifests, so a kill never leaves half a record."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fapo.errors import FapoError, fs_error


class BadArtifact(FapoError, ValueError):
    """A JSON artifact that does not parse."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Files are created as a plain `open()` would (0666 minus the umask): `mkstemp` makes them 0600,
#: which left run folders unreadable to the CI user sharing the artifacts (51 of 60 files).
_FILE_MODE = 0o666 & ~_umask()


def write_text(path: Path, text: str) -> None:
    """Write atomically (temp file + rename); a file-system error is a one-line FapoError."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise fs_error(exc, path) from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    """A JSON artifact; a broken one is a one-line error naming it (still a ValueError, which
    callers that skip unreadable artifacts catch). OSError passes through as it was."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = f":{exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise BadArtifact(
            f"{path}{line}: not valid JSON; restore the file or remove the folder it belongs to"
        ) from None


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

"""One error type for everything a user can get wrong: printed as one line, exit code 2."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class FapoError(Exception):
    """A user-facing error. `str(err)` is a single line naming the file/key and the fix."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ProviderOutage(FapoError):
    """A model provider failed a window of calls for infrastructure reasons (auth, 5xx after
    retries, connection, timeout): the run stops with this one-line reason and stays resumable.

    Exit code 3, not 2: nothing the user wrote is wrong; rerun (or `--resume`) when it recovers.
    """

    exit_code = 3


class BudgetExhausted(Exception):
    """Raised inside the loop when a budget limit is reached; the run stops cleanly."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def validation_problem(exc: Any) -> tuple[tuple[Any, ...], str, str]:
    """(location, dotted key, message) of the first error of a pydantic ValidationError, worded
    for a person editing the file: validator wrappers dropped, unknown keys named as such."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not str(p).startswith("function-after"))
    key = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key; remove it or check the spelling"
    return loc, key, msg


#: What to do about a file-system error, by errno (the message names the file).
_FS_FIX = {
    errno.ENOSPC: "the disk is full; free space there and retry",
    errno.EDQUOT: "the disk quota is exhausted; free space there and retry",
    errno.EACCES: "permission denied; make it writable (chmod u+w) or use another folder",
    errno.EPERM: "operation not permitted; make it writable or use another folder",
    errno.EROFS: "the file system is read-only; use a writable folder",
    errno.ENOTDIR: "a file stands where a folder is needed; move it away or change fapo.toml [paths]",
    errno.EEXIST: "a file stands where a folder is needed; move it away or change fapo.toml [paths]",
    errno.EISDIR: "a folder stands where a file is needed; move it away",
    errno.ENOENT: "not found; create it or fix the path",
}


def fs_error(exc: OSError, where: Path | str | None = None) -> FapoError:
    """One line for a file-system error: the file (or the folder being written), what, the fix."""
    name = exc.filename or where
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and name:
        name = _in_the_way(Path(name))
    fix = _FS_FIX.get(exc.errno or 0, f"{exc.strerror or exc}; fix the file or its folder")
    return FapoError(f"{name or 'file system'}: {fix}")


def read_text(path: Path) -> str:
    """A UTF-8 text file, or a one-line FapoError naming it (and the line of a bad byte)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fs_error(exc, path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FapoError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def _in_the_way(path: Path) -> Path:
    """The nearest of `path` and its parents that exists and is not a folder (what blocks mkdir)."""
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            return p
    return path

"""One error type for everything a user can get wrong: printed as one line, exit code 2."""

from __future__ import annotations

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

    def recorded_in(self, run_dir: Any) -> ProviderOutage:
        """Mark the run stopped by this outage in its run.json: status `interrupted` (not
        `finished`, so `fapo run --resume` continues it) with this one-line reason."""
        import time
        from pathlib import Path

        from fapo.artifacts import read_json, write_json

        path = Path(run_dir) / "run.json"
        info = read_json(path) if path.is_file() else {}
        info.update(status="interrupted", stop_reason=str(self), stopped=time.time())
        write_json(path, info)
        return self


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

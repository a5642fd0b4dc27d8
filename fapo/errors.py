"""One error type for everything a user can get wrong: printed as one line, exit code 2."""

from __future__ import annotations


class FapoError(Exception):
    """A user-facing error. `str(err)` is a single line naming the file/key and the fix."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class BudgetExhausted(Exception):
    """Raised inside the loop when a budget limit is reached; the run stops cleanly."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

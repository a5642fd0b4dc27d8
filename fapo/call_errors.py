"""Why a model call failed: its kinds (infrastructure? retryable?) and the error the step gets."""

from __future__ import annotations

from enum import StrEnum


class CallErrorKind(StrEnum):
    """Why one model call (after its retries) failed. Stored in records as `error_kind`."""

    AUTH = "auth"  # 401/403
    RATE_LIMITED = "rate_limited"  # 429 after retries
    SERVER = "server_error"  # 5xx after retries
    CONNECTION = "connection"  # reset, refused, truncated body
    TIMEOUT = "timeout"
    BAD_REQUEST = "bad_request"  # another 4xx: the request itself is wrong
    MALFORMED = "malformed_response"  # a 2xx the client could not parse
    EMPTY = "empty_response"  # no choices / no generation
    REFUSAL = "refusal"
    CONTENT_FILTER = "content_filter"
    CLIENT = "client_error"  # anything else the client raised


#: Failures that say nothing about the chain: never a cluster for the agent; a run of them in a
#: row is a provider outage.
INFRASTRUCTURE = frozenset(
    {
        CallErrorKind.AUTH,
        CallErrorKind.RATE_LIMITED,
        CallErrorKind.SERVER,
        CallErrorKind.CONNECTION,
        CallErrorKind.TIMEOUT,
    }
)
#: Failures another attempt can cure. Refusals and content filters are not retried: at the same
#: prompt and settings they come back (and each attempt is paid for).
RETRYABLE = frozenset(
    {
        CallErrorKind.RATE_LIMITED,
        CallErrorKind.SERVER,
        CallErrorKind.CONNECTION,
        CallErrorKind.TIMEOUT,
        CallErrorKind.MALFORMED,
        CallErrorKind.EMPTY,
    }
)


class ModelCallError(Exception):
    """A model call failed after its attempts; raised to the step that made it (a step error)."""

    def __init__(
        self,
        kind: CallErrorKind,
        detail: str,
        *,
        attempts: int,
        tokens: tuple[int, int] = (0, 0),
        cost_usd: float = 0.0,
    ) -> None:
        super().__init__(f"[{kind.value}] {detail} (after {attempts} attempt(s))")
        self.kind, self.attempts, self.tokens, self.cost_usd = kind, attempts, tokens, cost_usd

    @property
    def infrastructure(self) -> bool:
        return self.kind in INFRASTRUCTURE

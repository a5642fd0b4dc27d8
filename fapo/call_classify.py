"""Classifying one provider attempt: its exception or its answer, as a `CallErrorKind`."""

from __future__ import annotations

import email.utils
import sys
import time
from typing import Any

from langchain_core.outputs import ChatResult

from fapo.call_errors import CallErrorKind

#: Provider finish/stop reasons (protocol values) that mean "no answer", by kind.
_FINISH_FAILURES = {
    "content_filter": CallErrorKind.CONTENT_FILTER,
    "refusal": CallErrorKind.REFUSAL,
}


def _loaded_types(*names: tuple[str, str]) -> tuple[type[BaseException], ...]:
    """Exception classes of modules already imported (the SDK in use is; others need not be)."""
    out: list[type[BaseException]] = []
    for module, attr in names:
        mod = sys.modules.get(module)
        cls = getattr(mod, attr, None) if mod is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            out.append(cls)
    return tuple(out)


def retry_after_s(headers: Any) -> float | None:
    """Seconds a server asked us to wait (`retry-after-ms`, `retry-after` seconds or HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, AttributeError):
        return None


def classify_exception(exc: BaseException) -> tuple[CallErrorKind, float | None]:
    """(kind, Retry-After seconds) of an exception raised by one provider attempt."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    wait = retry_after_s(getattr(response, "headers", None))
    if isinstance(status, int) and status >= 400:
        if status in (401, 403):
            return CallErrorKind.AUTH, wait
        if status == 429:
            return CallErrorKind.RATE_LIMITED, wait
        if status == 408:
            return CallErrorKind.TIMEOUT, wait
        if status >= 500:
            return CallErrorKind.SERVER, wait
        return CallErrorKind.BAD_REQUEST, wait
    timeouts = _loaded_types(
        ("openai", "APITimeoutError"),
        ("anthropic", "APITimeoutError"),
        ("httpx", "TimeoutException"),
    )
    if isinstance(exc, timeouts + (TimeoutError,)):
        return CallErrorKind.TIMEOUT, wait
    connection = _loaded_types(
        ("openai", "APIConnectionError"),
        ("anthropic", "APIConnectionError"),
        ("httpx", "TransportError"),
    )
    if isinstance(exc, connection + (ConnectionError,)):
        return CallErrorKind.CONNECTION, wait
    # A 2xx whose body the SDK or LangChain could not turn into a message: invalid JSON, a
    # non-JSON content type, missing fields (SDK validation errors carry status 200).
    malformed = _loaded_types(
        ("openai", "APIResponseValidationError"),
        ("anthropic", "APIResponseValidationError"),
        ("pydantic", "ValidationError"),
    )
    if isinstance(exc, malformed + (ValueError, TypeError, KeyError, IndexError, AttributeError)):
        return CallErrorKind.MALFORMED, wait
    return CallErrorKind.CLIENT, wait


def classify_result(result: ChatResult) -> CallErrorKind | None:
    """None for a usable answer, else why it is not one (empty, refusal, content filter)."""
    from fapo.models import finish_reason_of

    if not result.generations:
        return CallErrorKind.EMPTY
    finish = finish_reason_of(result)
    if finish in _FINISH_FAILURES:
        return _FINISH_FAILURES[finish]
    msg = result.generations[0].message
    if msg.additional_kwargs.get("refusal"):  # OpenAI's structured refusal field
        return CallErrorKind.REFUSAL
    # No text and no tool call, and not cut by max_tokens (that is a truncation, reported as
    # finish reason 'length'): e.g. Anthropic's `content: []`.
    if not msg.content and not getattr(msg, "tool_calls", None) and finish != "length":
        return CallErrorKind.EMPTY
    return None

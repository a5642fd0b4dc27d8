"""Step checks: the request leaked private data (redact), the response is empty (respond)."""

from __future__ import annotations

from typing import Any

from fapo import check


@check(
    "redact",
    cause="the request to the untrusted model contains PII units of the query",
    level="prompt",
    confidence=0.8,
)
def request_is_private(example: Any, state: dict[str, Any]) -> bool:
    low = str(state.get("request") or "").lower()
    return not any(u.lower() in low for u in example.label["pii"])


@check("respond", cause="the final response is empty", level="prompt", confidence=0.7)
def responded(example: Any, state: dict[str, Any]) -> bool:
    return bool(str(state.get("response") or "").strip())

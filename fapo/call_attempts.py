"""One model call's attempts: budget admission, metering, backoff, failure, the capped answer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langchain_core.outputs import ChatGeneration, ChatResult

from fapo.call_classify import classify_exception, classify_result
from fapo.call_errors import RETRYABLE, CallErrorKind, ModelCallError

if TYPE_CHECKING:
    from fapo.llm import InstrumentedChatModel


def cap_output(result: ChatResult, limit: int) -> tuple[ChatResult, bool]:
    """The answer with its text cut to `limit` characters (finish reason 'length'), and whether
    it was cut. Text blocks of a list content share the limit."""
    gen = result.generations[0]
    msg = gen.message
    content: Any = msg.content
    capped = False
    if isinstance(content, str):
        if len(content) > limit:
            content, capped = content[:limit], True
    elif isinstance(content, list):
        left, blocks = limit, []
        for block in content:
            text = block.get("text") if isinstance(block, dict) else block
            if isinstance(text, str):
                if len(text) > left:
                    text, capped = text[:left], True
                left -= len(text)
                block = {**block, "text": text} if isinstance(block, dict) else text
            blocks.append(block)
        content = blocks
    if not capped:
        return result, False
    meta = {**msg.response_metadata, "finish_reason": "length", "fapo_capped": True}
    new = msg.model_copy(update={"content": content, "response_metadata": meta})
    info = {**(gen.generation_info or {}), "finish_reason": "length"}
    return (
        ChatResult(
            generations=[ChatGeneration(message=new, generation_info=info)],
            llm_output=result.llm_output,
        ),
        True,
    )


@dataclass
class Attempts:
    """The attempts of one model call: admission before each, accounting after each, the
    backoff between them. Shared by the sync and async paths of InstrumentedChatModel."""

    model: InstrumentedChatModel
    n: int = 0
    tin: int = 0
    tout: int = 0
    usd: float = 0.0
    last: tuple[int, int] = (0, 0)  # tokens of the latest attempt (the answer, on success)

    def before(self) -> None:
        if self.model.meter is not None:
            self.model.meter.admit()
        self.n += 1

    def after(
        self, result: ChatResult | None, exc: Exception | None
    ) -> tuple[CallErrorKind | None, float | None, str]:
        """(failure kind or None, Retry-After, detail) of the attempt just made; metered."""
        from fapo.models import usage_of

        tin = tout = 0
        wait: float | None = None
        if exc is not None:
            kind: CallErrorKind | None
            kind, wait = classify_exception(exc)
            detail = f"{type(exc).__name__}: {exc}"
        else:
            assert result is not None
            kind = classify_result(result)
            tin, tout = usage_of(result) if result.generations else (0, 0)
            detail = f"the provider answered without usable content ({kind.value})" if kind else ""
        price = self.model.price
        usd = (tin * price[0] + tout * price[1]) / 1e6 if price else 0.0
        self.tin, self.tout, self.usd = self.tin + tin, self.tout + tout, self.usd + usd
        self.last = (tin, tout)
        if self.model.meter is not None:
            self.model.meter.settle(tin=tin, tout=tout, usd=usd, failure=kind)
        return kind, wait, detail[:2000]

    def backoff(self, kind: CallErrorKind, wait: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None when the call has failed for good."""
        m = self.model
        if kind not in RETRYABLE or self.n > m.max_retries:
            return None
        if wait is None:  # full-jitter exponential backoff
            wait = random.uniform(0.5, 1.0) * m.retry_base_s * 2 ** (self.n - 1)
        return min(wait, m.retry_max_s)

    def fail(self, kind: CallErrorKind, detail: str) -> ModelCallError:
        """The error for the step; provider health sees it first (may raise ProviderOutage)."""
        err = ModelCallError(
            kind, detail, attempts=self.n, tokens=(self.tin, self.tout), cost_usd=self.usd
        )
        if self.model.meter is not None:
            self.model.meter.call_done(self.model.endpoint, err, self.model.outage_after)
        return err

    def succeed(self, key: str, result: ChatResult) -> ChatResult:
        from fapo.models import finish_reason_of

        m = self.model
        if m.meter is not None:
            m.meter.call_done(m.endpoint, None, m.outage_after)
        result, capped = cap_output(result, m.max_output_chars)
        msg = result.generations[0].message
        finish = finish_reason_of(result)
        if m.call_cache is not None:
            tin, tout = self.last
            m.call_cache.put(
                key,
                {
                    "content": msg.content,
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "response_metadata": {"finish_reason": finish, "fapo_capped": capped},
                },
            )
        return m.report(
            result,
            hit=False,
            attempts=self.n,
            usd=self.usd,
            capped=capped,
            finish=finish,
            tokens=self.last,
        )

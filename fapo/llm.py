"""The chat model a chain gets from `ctx.llm()`: the provider's LangChain model wrapped for the
content-addressed cache, budget admission, and fapo's own attempt loop (meter, rate limit, retries,
failure kinds, output cap, provider health). Recording is done by a LangChain callback handler
(fapo/tracing.py), which reads what this model reports in `llm_output["fapo"]` or its error.

Chains stay plain LangChain code: this *is* a `BaseChatModel`.

Why retries live here and not in the SDK (issue 14): the openai/anthropic SDKs retried inside one
`_agenerate`, so the meter and the rate limiter saw one call where the server saw up to four
(measured: 64 requests at the server for "30 calls issued", 14 req/s at a limit of 8). Hooking the
SDKs' httpx transport would count attempts but could not retry what the SDK accepts as a success
(a 200 with empty `choices` or an unparsable body) and would need one hook per SDK. So the SDK gets
`max_retries=0` and every HTTP attempt is one pass through `_Attempts` below: admitted by the
budget, admitted by the rate limiter, metered (tokens and USD where the answer says), classified,
and retried with backoff honouring Retry-After. That is exact by construction: one `_agenerate`
of the inner model is one HTTP request (tests/test_faults.py checks server count == metered).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from fapo.cache import CallCache, call_key
from fapo.errors import BudgetExhausted, ProviderOutage
from fapo.runtime import REPEAT, SAMPLE


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

#: Provider finish/stop reasons (protocol values) that mean "no answer", by kind.
_FINISH_FAILURES = {
    "content_filter": CallErrorKind.CONTENT_FILTER,
    "refusal": CallErrorKind.REFUSAL,
}


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


class Meter:
    """Run-wide counters of task-model spend, with optional hard limits checked before every HTTP
    attempt. `calls` counts attempts (retries and failures included): what the server received."""

    def __init__(
        self,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_usd: float | None = None,
    ) -> None:
        self.calls = self.cache_hits = self.input_tokens = self.output_tokens = 0
        self.failed_calls = 0  # attempts that did not yield an answer (included in `calls`)
        self.errors: dict[str, int] = {}  # failed attempts by CallErrorKind
        self.cost_usd = 0.0
        self.max_calls, self.max_tokens, self.max_usd = max_calls, max_tokens, max_usd
        self.extra_usd = 0.0  # spend outside the task model (agents) counted against max_usd
        self.outage: ProviderOutage | None = None
        self._streak: dict[str, tuple[int, str]] = {}  # endpoint -> (infra failures in a row, last)
        self._lock = threading.Lock()

    def admit(self) -> None:
        """Reserve one HTTP attempt or raise BudgetExhausted / the recorded ProviderOutage.

        Reserving under the lock (not check-then-count) keeps concurrent examples from all
        passing the check at `max_calls - 1`: the call budget holds exactly at the server."""
        with self._lock:
            if self.outage is not None:
                raise self.outage
            if self.max_calls is not None and self.calls >= self.max_calls:
                raise BudgetExhausted(f"task-model call budget spent ({self.max_calls} calls)")
            # Tokens and USD are known only after an answer: up to `concurrency` attempts in
            # flight may pass these checks together (documented overshoot).
            if (
                self.max_tokens is not None
                and self.input_tokens + self.output_tokens >= self.max_tokens
            ):
                raise BudgetExhausted(f"token budget spent ({self.max_tokens} tokens)")
            if self.max_usd is not None and self.cost_usd + self.extra_usd >= self.max_usd:
                raise BudgetExhausted(f"USD budget spent (${self.max_usd:g})")
            self.calls += 1

    def settle(self, *, tin: int, tout: int, usd: float, failure: CallErrorKind | None) -> None:
        """Account one admitted attempt's outcome."""
        with self._lock:
            self.input_tokens += tin
            self.output_tokens += tout
            self.cost_usd += usd
            if failure is not None:
                self.failed_calls += 1
                self.errors[failure.value] = self.errors.get(failure.value, 0) + 1

    def hit(self) -> None:
        with self._lock:
            self.cache_hits += 1

    def add(self, *, hit: bool, tin: int, tout: int, usd: float) -> None:
        """One answered call in a single step (kept for callers outside the attempt loop)."""
        if hit:
            self.hit()
            return
        with self._lock:
            self.calls += 1
        self.settle(tin=tin, tout=tout, usd=usd, failure=None)

    def absorb(self, other: Meter) -> None:
        """Charge another meter's spend to this one: interventions keep their own meter (their
        cap, reported apart) but the run's budgets cover what they cost too."""
        with self._lock:
            self.calls += other.calls
            self.failed_calls += other.failed_calls
            self.cache_hits += other.cache_hits
            self.input_tokens += other.input_tokens
            self.output_tokens += other.output_tokens
            self.cost_usd += other.cost_usd
            for kind, n in other.errors.items():
                self.errors[kind] = self.errors.get(kind, 0) + n

    def call_done(self, endpoint: str, error: ModelCallError | None, limit: int) -> None:
        """Provider health: after `limit` calls in a row to `endpoint` failed for infrastructure
        reasons (after their retries), record and raise ProviderOutage; any answer resets it."""
        with self._lock:
            if error is None or not error.infrastructure:
                self._streak.pop(endpoint, None)
                return
            n = self._streak.get(endpoint, (0, ""))[0] + 1
            self._streak[endpoint] = (n, str(error))
            if n < limit or self.outage is not None:
                return
            self.outage = ProviderOutage(
                f"provider outage at {endpoint}: {n} model calls in a row failed for "
                f"infrastructure reasons, last: {error}; the run stopped and can be continued "
                "with `fapo run --resume RUN_ID` once the provider answers again"
            )
        raise self.outage

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failed_calls": self.failed_calls,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def _messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    return [{"role": m.type, "content": m.content} for m in messages]


# --- classifying one attempt ------------------------------------------------------------------


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
class _Attempts:
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


class InstrumentedChatModel(BaseChatModel):
    """Cache → (budget, rate limit, provider attempt, classify)×retries → answer or step error.

    What happened is reported to callbacks: `llm_output["fapo"]` on success, a ModelCallError
    (kind, attempts) on failure; fapo/tracing.py turns that into the call record.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    spec: str
    call_settings: dict[str, Any]
    call_cache: CallCache | None = None
    meter: Meter | None = None
    price: tuple[float, float] | None = None
    endpoint: str = ""  # provider health is tracked per endpoint (rate key + base URL)
    max_retries: int = 3
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    max_output_chars: int = 100_000
    outage_after: int = 5

    @property
    def _llm_type(self) -> str:
        return f"fapo-instrumented:{self.inner._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"spec": self.spec, **self.call_settings}

    def _key(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict) -> str:
        settings = {**self.call_settings, **({"stop": stop} if stop else {}), **kwargs}
        return call_key(self.spec, settings, _messages(messages), REPEAT.get(), SAMPLE.get())

    def _lookup(self, key: str) -> ChatResult | None:
        if self.call_cache is None:
            return None
        hit = self.call_cache.get(key)
        if hit is None:
            return None
        meta = hit.get("response_metadata", {})
        msg = AIMessage(
            content=hit["content"],
            response_metadata=meta,
            usage_metadata={
                "input_tokens": hit["input_tokens"],
                "output_tokens": hit["output_tokens"],
                "total_tokens": hit["input_tokens"] + hit["output_tokens"],
            },
        )
        result = ChatResult(generations=[ChatGeneration(message=msg)])
        if self.meter is not None:
            self.meter.hit()
        return self.report(
            result,
            hit=True,
            attempts=0,
            usd=0.0,
            capped=bool(meta.get("fapo_capped")),
            finish=meta.get("finish_reason"),
            tokens=(hit["input_tokens"], hit["output_tokens"]),
        )

    def report(
        self,
        result: ChatResult,
        *,
        hit: bool,
        attempts: int,
        usd: float,
        capped: bool,
        finish: str | None,
        tokens: tuple[int, int],
    ) -> ChatResult:
        """The answer with what the callback handler records about it in `llm_output` (finish
        reason and tokens included, so the handler need not re-parse the answer)."""
        fapo = {
            "cache_hit": hit,
            "attempts": attempts,
            "cost_usd": usd,
            "capped": capped,
            "finish_reason": finish,
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
        }
        return ChatResult(
            generations=result.generations, llm_output={**(result.llm_output or {}), "fapo": fapo}
        )

    def _limiter(self) -> Any:
        return self.inner.rate_limiter

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key = self._key(messages, stop, kwargs)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        tries = _Attempts(self)
        limiter = self._limiter()
        while True:
            tries.before()
            if limiter is not None:  # every attempt, so the configured rate holds at the server
                await limiter.aacquire(blocking=True)
            result: ChatResult | None = None
            error: Exception | None = None
            try:
                result = await self.inner._agenerate(messages, stop=stop, **kwargs)
            except Exception as exc:  # classified below; cancellation is not caught
                error = exc
            kind, wait, detail = tries.after(result, error)
            if kind is None:
                assert result is not None
                return tries.succeed(key, result)
            delay = tries.backoff(kind, wait)
            if delay is None:
                raise tries.fail(kind, detail) from error
            await asyncio.sleep(delay)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key = self._key(messages, stop, kwargs)
        cached = self._lookup(key)
        if cached is not None:
            return cached
        tries = _Attempts(self)
        limiter = self._limiter()
        while True:
            tries.before()
            if limiter is not None:
                limiter.acquire(blocking=True)
            result: ChatResult | None = None
            error: Exception | None = None
            try:
                result = self.inner._generate(messages, stop=stop, **kwargs)
            except Exception as exc:
                error = exc
            kind, wait, detail = tries.after(result, error)
            if kind is None:
                assert result is not None
                return tries.succeed(key, result)
            delay = tries.backoff(kind, wait)
            if delay is None:
                raise tries.fail(kind, detail) from error
            time.sleep(delay)


class ModelFactory:
    """`ctx.llm(role, **settings)`: resolves the tenant's model spec for a role and instruments it."""

    def __init__(
        self, models: dict[str, str], settings: Any, cache: CallCache | None, meter: Meter | None
    ) -> None:
        self.models, self.settings, self.cache, self.meter = models, settings, cache, meter

    def __call__(self, role: str = "task", **call_settings: Any) -> InstrumentedChatModel:
        from fapo.errors import FapoError
        from fapo.models import make_chat_model, parse_spec, price

        if role not in self.models:
            raise FapoError(
                f"chain.py asks for model role '{role}' but tenant.yaml 'models' "
                f"has only {', '.join(self.models)}; add it there"
            )
        spec_str = self.models[role]
        spec = parse_spec(spec_str)
        conf = self.settings.model_calls
        retries = call_settings.get("max_retries")
        sdk_settings = dict(call_settings)
        if spec.provider != "sim":
            sdk_settings["max_retries"] = 0  # fapo retries (see the module docstring)
        inner = make_chat_model(spec, self.settings, **sdk_settings)
        return InstrumentedChatModel(
            inner=inner,
            spec=spec_str,
            call_settings=dict(call_settings),
            call_cache=self.cache,
            meter=self.meter,
            price=price(spec_str, self.settings),
            endpoint=f"{spec.rate_key} {spec.base_url or ''}".strip(),
            max_retries=conf.max_retries if retries is None else int(retries),
            retry_base_s=conf.retry_base_s,
            retry_max_s=conf.retry_max_s,
            max_output_chars=conf.max_output_chars,
            outage_after=conf.outage_after,
            cache=False,
        )

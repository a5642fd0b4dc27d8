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
`max_retries=0` and every HTTP attempt is one pass through `Attempts` (fapo/call_attempts.py):
admitted by the budget, admitted by the rate limiter, metered (tokens and USD where the answer
says; fapo/meter.py), classified (fapo/call_classify.py), and retried with backoff honouring
Retry-After. That is exact by construction: one `_agenerate` of the inner model is one HTTP
request (tests/test_faults.py checks server count == metered).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from fapo.cache import CallCache, call_key
from fapo.call_attempts import Attempts
from fapo.call_errors import INFRASTRUCTURE as INFRASTRUCTURE  # re-exported (attribute.py)
from fapo.call_errors import CallErrorKind as CallErrorKind  # re-exported (tests)
from fapo.call_errors import ModelCallError as ModelCallError  # re-exported (tests)
from fapo.meter import Meter as Meter  # re-exported (interventions.py, tests)
from fapo.runtime import REPEAT, SAMPLE


def _messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    return [{"role": m.type, "content": m.content} for m in messages]


def greedy(settings: dict[str, Any]) -> bool:
    """Does a call with these settings ask for no sampling (an explicit temperature 0)? Then it
    has no draws: its repeats and a vote's samples are one answer, and the cache keys them as one
    call. The engine treats temperature 0 as deterministic everywhere (comparisons take draws
    only when a call ran above 0; a vote at 0 is not raced; interventions do not resample it);
    caching the repeats makes that true of real providers too, whose temperature-0 answers vary
    only by serving noise. Measured: in a race with 3 repeats, every temperature-0 step upstream
    or downstream of the one sampling step paid its call 3 times for the same messages. Unset
    temperatures (the provider's default, usually 1) keep their draws."""
    t = settings.get("temperature")
    return isinstance(t, int | float) and not isinstance(t, bool) and float(t) == 0.0


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
        draw = (0, 0) if greedy(settings) else (REPEAT.get(), SAMPLE.get())
        return call_key(self.spec, settings, _messages(messages), *draw)

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
        flights = self.call_cache.flights if self.call_cache is not None else None
        # Single flight: a key already being fetched (a temperature-0 call's repeats, which
        # share one key, start together) waits for that answer instead of paying for it again;
        # so a key costs one call however the examples interleave. Per event loop: an event
        # belongs to the loop that waits on it.
        flight = f"{id(asyncio.get_running_loop())}:{key}"
        while flights is not None and (other := flights.get(flight)) is not None:
            await other.wait()
            if (cached := self._lookup(key)) is not None:
                return cached
        mine = asyncio.Event()
        if flights is not None:
            flights[flight] = mine
        try:
            return await self._fetch(key, messages, stop, **kwargs)
        finally:
            if flights is not None and flights.get(flight) is mine:
                del flights[flight]
            mine.set()

    async def _fetch(
        self, key: str, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> ChatResult:
        tries = Attempts(self)
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
        tries = Attempts(self)
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

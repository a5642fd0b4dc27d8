"""The chat model a chain gets from `ctx.llm()`: the provider's LangChain model, wrapped so every call
is cached (content-addressed), recorded against the step that made it, metered and priced.

Chains stay plain LangChain code: this *is* a `BaseChatModel`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables.config import ensure_config
from pydantic import ConfigDict

from fapo.cache import CallCache, call_key
from fapo.errors import BudgetExhausted
from fapo.runtime import RECORDER, REPEAT, SAMPLE


class Meter:
    """Run-wide counters of task-model spend, with optional hard limits (checked before a call)."""

    def __init__(
        self,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_usd: float | None = None,
    ) -> None:
        self.calls = self.cache_hits = self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self.max_calls, self.max_tokens, self.max_usd = max_calls, max_tokens, max_usd
        self.extra_usd = 0.0  # spend outside the task model (agents) counted against max_usd
        self._lock = threading.Lock()

    def admit(self) -> None:
        if self.max_calls is not None and self.calls >= self.max_calls:
            raise BudgetExhausted(f"task-model call budget spent ({self.max_calls} calls)")
        if (
            self.max_tokens is not None
            and self.input_tokens + self.output_tokens >= self.max_tokens
        ):
            raise BudgetExhausted(f"token budget spent ({self.max_tokens} tokens)")
        if self.max_usd is not None and self.cost_usd + self.extra_usd >= self.max_usd:
            raise BudgetExhausted(f"USD budget spent (${self.max_usd:g})")

    def add(self, *, hit: bool, tin: int, tout: int, usd: float) -> None:
        with self._lock:
            if hit:
                self.cache_hits += 1
                return
            self.calls += 1
            self.input_tokens += tin
            self.output_tokens += tout
            self.cost_usd += usd

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def _messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    return [{"role": m.type, "content": m.content} for m in messages]


def _current_task() -> tuple[str | None, str | None]:
    """(node name, task id) of the LangGraph task this call runs in, if any."""
    meta = ensure_config().get("metadata") or {}
    ns = str(meta.get("langgraph_checkpoint_ns") or "")
    task_id = ns.split("|")[-1].split(":")[-1] if ":" in ns else None
    return meta.get("langgraph_node"), task_id


class InstrumentedChatModel(BaseChatModel):
    """Cache → (rate limit, provider call) → record. Errors are recorded and re-raised to the step."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    spec: str
    call_settings: dict[str, Any]
    call_cache: CallCache | None = None
    meter: Meter | None = None
    price: tuple[float, float] | None = None

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
        msg = AIMessage(
            content=hit["content"],
            response_metadata=hit.get("response_metadata", {}),
            usage_metadata={
                "input_tokens": hit["input_tokens"],
                "output_tokens": hit["output_tokens"],
                "total_tokens": hit["input_tokens"] + hit["output_tokens"],
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _finish(
        self,
        key: str,
        messages: list[BaseMessage],
        result: ChatResult | None,
        error: BaseException | None,
        started: float,
        hit: bool,
    ) -> None:
        from fapo.models import finish_reason_of, usage_of

        latency = time.perf_counter() - started
        msg = result.generations[0].message if result else None
        tin, tout = usage_of(result) if result is not None else (0, 0)
        usd = (tin * self.price[0] + tout * self.price[1]) / 1e6 if self.price and not hit else 0.0
        finish = finish_reason_of(result) if result is not None else None
        if msg is not None and not hit and self.call_cache is not None:
            self.call_cache.put(
                key,
                {
                    "content": msg.content,
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "response_metadata": {"finish_reason": finish},
                },
            )
        if self.meter is not None and error is None:
            self.meter.add(hit=hit, tin=tin, tout=tout, usd=usd)
        rec = RECORDER.get()
        if rec is not None:
            node, task = _current_task()
            rec.calls.append(
                {
                    "node": node,
                    "task": task,
                    "model": self.spec,
                    "settings": self.call_settings,
                    "sample": SAMPLE.get(),
                    "messages": _messages(messages),
                    "output": msg.content if msg is not None else None,
                    "finish_reason": finish,
                    "input_tokens": tin,
                    "output_tokens": tout,
                    "latency_s": round(latency, 6),
                    "cost_usd": usd,
                    "cache_hit": hit,
                    "error": f"{type(error).__name__}: {error}" if error else None,
                }
            )

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict
    ) -> tuple[str, ChatResult | None]:
        """The cache key and, on a hit, the recorded answer (logged as a hit); on a miss the
        meter admits the call or raises BudgetExhausted. Shared by the sync and async paths."""
        key = self._key(messages, stop, kwargs)
        cached = self._lookup(key)
        if cached is not None:
            self._finish(key, messages, cached, None, time.perf_counter(), hit=True)
        elif self.meter is not None:
            self.meter.admit()
        return key, cached

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key, cached = self._prepare(messages, stop, kwargs)
        if cached is not None:
            return cached
        if self.inner.rate_limiter is not None:
            await self.inner.rate_limiter.aacquire(blocking=True)
        started = time.perf_counter()
        try:
            result = await self.inner._agenerate(messages, stop=stop, **kwargs)
        except BaseException as exc:
            self._finish(key, messages, None, exc, started, hit=False)
            raise
        self._finish(key, messages, result, None, started, hit=False)
        return result

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        key, cached = self._prepare(messages, stop, kwargs)
        if cached is not None:
            return cached
        if self.inner.rate_limiter is not None:
            self.inner.rate_limiter.acquire(blocking=True)
        started = time.perf_counter()
        try:
            result = self.inner._generate(messages, stop=stop, **kwargs)
        except BaseException as exc:
            self._finish(key, messages, None, exc, started, hit=False)
            raise
        self._finish(key, messages, result, None, started, hit=False)
        return result


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
        inner = make_chat_model(parse_spec(spec_str), self.settings, **call_settings)
        return InstrumentedChatModel(
            inner=inner,
            spec=spec_str,
            call_settings=dict(call_settings),
            call_cache=self.cache,
            meter=self.meter,
            price=price(spec_str, self.settings),
            cache=False,
        )


class Recorder:
    """Collects the LLM calls of one example evaluation (set in fapo.runtime.RECORDER)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

"""Model specs (`anthropic:…`, `openai:…[@URL]`, `local:…`, `sim:…`) turned into LangChain chat models.

Retries, timeouts and rate limits are delegated to the provider SDKs and LangChain, configured
here with bounded values, so every tenant gets the same failure behaviour. Provider packages are
imported lazily so `fapo --help` stays fast and works without them configured.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from fapo.errors import FapoError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.rate_limiters import InMemoryRateLimiter

    from fapo.settings import Settings

Provider = Literal["anthropic", "openai", "local", "sim"]

#: Seconds before one HTTP attempt is abandoned (and retried) unless the caller passes `timeout`.
DEFAULT_TIMEOUT_S = 120.0
#: SDK retries after the first attempt on 408/409/429/5xx/connection errors/timeouts.
DEFAULT_MAX_RETRIES = 3
#: Per-attempt timeout for `local:` models: one server answers one request at a time, so a call
#: waits behind every queued one (8 queued 135M-model calls took up to 20 s on 2 busy cores).
LOCAL_TIMEOUT_S = 600.0
#: Key used when a local OpenAI-compatible server has no authentication.
LOCAL_PLACEHOLDER_KEY = "not-needed"

ACCEPTED_FORMS = (
    "anthropic:MODEL, openai:MODEL, openai:MODEL@http://HOST:PORT/v1 (an OpenAI-compatible "
    "server such as vLLM, Ollama or llama.cpp), anthropic:MODEL@http://HOST:PORT, "
    "local:smollm2 or local:PATH.gguf (llama.cpp started by fapo), or sim:NAME[?latency_ms=50]"
)

_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]*")
_SIM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_OPTION_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Call settings a real provider accepts (anything else is a typo we refuse to forward silently).
_COMMON_SETTINGS = {"temperature", "max_tokens", "top_p", "stop", "timeout", "max_retries"}
_PROVIDER_SETTINGS: dict[str, set[str]] = {
    "anthropic": _COMMON_SETTINGS | {"top_k"},
    "openai": _COMMON_SETTINGS
    | {"seed", "presence_penalty", "frequency_penalty", "reasoning_effort", "n"},
}
_PROVIDER_SETTINGS["local"] = _PROVIDER_SETTINGS["openai"]  # served through the OpenAI path

_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; `str(spec)` gives back the canonical text (the price-table key)."""

    provider: Provider
    model: str
    base_url: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.provider}:{self.model}"
        if self.base_url:
            text += f"@{self.base_url}"
        if self.options:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.options.items())
        return text

    @property
    def rate_key(self) -> str:
        """The `[rate_limits]` key: a compatible server is limited apart from the real API."""
        if self.provider == "openai" and self.base_url:
            return "openai-compatible"
        return self.provider


def _bad(spec: str, why: str) -> FapoError:
    return FapoError(f"model spec '{spec}': {why}; use {ACCEPTED_FORMS}")


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec from tenant.yaml / fapo.toml; any other form is a one-line FapoError."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(str(spec), "empty")
    text = spec.strip()
    provider, sep, rest = text.partition(":")
    if not sep or provider not in ("anthropic", "openai", "local", "sim"):
        raise _bad(spec, f"unknown provider '{provider if sep else text}'")
    if provider == "sim":
        name, qsep, query = rest.partition("?")
        if not _SIM_RE.fullmatch(name):
            raise _bad(spec, "the simulator needs a NAME of letters, digits, '.', '_' or '-'")
        options: dict[str, str] = {}
        if qsep:
            try:
                pairs = parse_qsl(query, keep_blank_values=False, strict_parsing=True)
            except ValueError:
                raise _bad(
                    spec, f"options '{query}' are not key=value pairs joined by '&'"
                ) from None
            for key, value in pairs:
                if not _OPTION_RE.fullmatch(key):
                    raise _bad(spec, f"option name '{key}' is not an identifier")
                options[key] = value
        return ModelSpec("sim", name, None, options)
    if provider == "local":  # local:NAME or local:PATH.gguf (a path may hold '@' or ':')
        if not rest.strip() or "?" in rest:
            raise _bad(spec, "local needs a bundled NAME or a PATH.gguf, without options")
        return ModelSpec("local", rest.strip())
    model, at, url = rest.partition("@")
    if not _MODEL_RE.fullmatch(model):
        raise _bad(spec, "missing or malformed MODEL name")
    if "?" in model:
        raise _bad(spec, f"options are only for sim specs, not {provider}")
    base_url: str | None = None
    if at:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad(spec, f"'{url}' is not an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise _bad(spec, f"the base URL '{url}' may not carry '?' or '#'")
        base_url = url.rstrip("/")
    return ModelSpec(provider, model, base_url, {})  # type: ignore[arg-type]


# --- rate limiting ------------------------------------------------------------------------

_LIMITERS: dict[tuple[str, float], InMemoryRateLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def rate_limiter(key: str, settings: Settings) -> InMemoryRateLimiter | None:
    """The process-wide token bucket for provider `key`, or None when it has no limit.

    Shared so that all steps, examples and variants evaluated in one process respect one limit.
    """
    rps = settings.rate_limits.get(key)
    if rps is None or rps <= 0:
        return None
    from langchain_core.rate_limiters import InMemoryRateLimiter

    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get((key, rps))
        if limiter is None:
            limiter = InMemoryRateLimiter(
                requests_per_second=rps,
                check_every_n_seconds=min(0.05, 0.25 / rps),
                max_bucket_size=1,
            )
            _LIMITERS[(key, rps)] = limiter
        return limiter


# --- chat models ----------------------------------------------------------------------------


def _coerce(value: str) -> Any:
    """Spec options arrive as text; numbers and booleans are passed to the simulator typed."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _api_key(spec: ModelSpec) -> str:
    env = _KEY_ENV[spec.provider]
    key = os.environ.get(env, "").strip()
    if key:
        return key
    if spec.base_url:  # a local compatible server usually has no authentication
        return LOCAL_PLACEHOLDER_KEY
    raise FapoError(
        f"model '{spec}' needs an API key: set {env} in the environment "
        "(or use a sim:NAME model to run offline)"
    )


def _check_settings(spec: ModelSpec, call_settings: dict[str, Any]) -> None:
    allowed = _PROVIDER_SETTINGS[spec.provider]
    unknown = sorted(set(call_settings) - allowed)
    if unknown:
        raise FapoError(
            f"ctx.llm(): setting '{unknown[0]}' is not supported for '{spec}'; "
            f"use {', '.join(sorted(allowed))}"
        )


def make_chat_model(spec: ModelSpec, settings: Settings, **call_settings: Any) -> BaseChatModel:
    """A LangChain chat model for `spec` with bounded timeout/retries and the provider's rate limit.

    `call_settings` are what a chain passes to `ctx.llm(...)` (temperature, max_tokens, timeout,
    max_retries, …). None values are dropped, so a chain may pass optional params straight through.

    Each model gets an async HTTP client of its own: LangChain's default one is cached per
    process, and its pooled connections belong to the event loop that opened them, so a second
    `asyncio.run` (every evaluation after the first) failed with "Event loop is closed". The
    engine builds the chain, hence its models, inside each evaluation's loop.
    """
    call = {k: v for k, v in call_settings.items() if v is not None}
    rate_key, local = spec.rate_key, spec.provider == "local"
    if local:  # start (or reuse) llama.cpp's server, then the OpenAI-compatible path
        from fapo.local_llm import alias_of, ensure_server

        url = ensure_server(spec.model).base_url
        spec = ModelSpec("openai", alias_of(spec.model), url)
        call.setdefault("timeout", LOCAL_TIMEOUT_S)
    if spec.provider == "sim":
        from fapo.sim import make_sim

        # call settings from the chain override the spec's options of the same name
        return make_sim(spec.model, **{**{k: _coerce(v) for k, v in spec.options.items()}, **call})
    _check_settings(spec, call)
    call.setdefault("timeout", DEFAULT_TIMEOUT_S)
    call.setdefault("max_retries", DEFAULT_MAX_RETRIES)
    common: dict[str, Any] = {
        "model": spec.model,
        "api_key": LOCAL_PLACEHOLDER_KEY if local else _api_key(spec),
        "rate_limiter": rate_limiter(rate_key, settings),
        **call,
    }
    if spec.base_url:
        common["base_url"] = spec.base_url
    if spec.provider == "anthropic":
        return _chat_anthropic_class()(**common)
    import openai

    if not os.environ.get("OPENAI_PROXY"):  # with a proxy LangChain already builds a fresh one
        common["http_async_client"] = openai.DefaultAsyncHttpxClient(timeout=call["timeout"])

    # Token usage in streamed replies too (budgets count tokens); LangChain leaves it off for
    # custom base URLs, but vLLM, Ollama and llama.cpp all accept `stream_options`.
    common.setdefault("stream_usage", True)
    return _chat_openai_class(compatible=spec.base_url is not None)(**common)


@functools.cache
def _chat_openai_class(compatible: bool) -> type[BaseChatModel]:
    """ChatOpenAI; for a compatible server (`@URL`), one that sends the generation limit as
    `max_tokens`. langchain-openai renames it to `max_completion_tokens`, which llama.cpp's server
    ignores (a call with max_tokens=6 returned hundreds of tokens, finish_reason 'stop')."""
    from langchain_openai import ChatOpenAI

    if not compatible:
        return ChatOpenAI

    class CompatibleChatOpenAI(ChatOpenAI):
        def _get_request_payload(self, input_: Any, *, stop: Any = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "max_completion_tokens" in payload and "max_tokens" not in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            return payload

    return CompatibleChatOpenAI


@functools.cache
def _chat_anthropic_class() -> type[BaseChatModel]:
    """ChatAnthropic with an async HTTP client of its own (see `make_chat_model`)."""
    import anthropic
    from langchain_anthropic import ChatAnthropic

    class OwnClientChatAnthropic(ChatAnthropic):
        @cached_property
        def _async_client(self) -> anthropic.AsyncClient:
            params = dict(self._client_params)
            http: dict[str, Any] = {"timeout": params["timeout"]} if "timeout" in params else {}
            if self.anthropic_proxy:
                http["proxy"] = self.anthropic_proxy
            client = anthropic.DefaultAsyncHttpxClient(**http)
            return anthropic.AsyncClient(**params, http_client=client)

    return OwnClientChatAnthropic


# --- prices, usage, finish reasons ----------------------------------------------------------


def price(spec_str: str, settings: Settings) -> tuple[float, float] | None:
    """USD per million (input, output) tokens, or None when the price table has no entry.

    An exact entry wins (so a compatible server can be priced by its full spec); the bare
    `provider:model` entry applies only when the request goes to the provider's own API.
    """
    spec = parse_spec(spec_str)
    if spec.provider in ("sim", "local"):  # local: electricity only
        return (0.0, 0.0)
    keys = [spec_str.strip(), str(spec)]
    if spec.base_url is None:
        keys.append(f"{spec.provider}:{spec.model}")
    for key in keys:
        entry = settings.prices.get(key)
        if entry is not None:
            return (entry.input, entry.output)
    return None


def cost_usd(spec_str: str, settings: Settings, input_tokens: int, output_tokens: int) -> float:
    """USD for one call; 0.0 when the price is unknown (check `price()` to warn about that)."""
    p = price(spec_str, settings)
    if p is None:
        return 0.0
    return (input_tokens * p[0] + output_tokens * p[1]) / 1_000_000


def _parts(reply: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(message, generation_info, llm_output) of a message, a ChatGeneration or a ChatResult.

    A provider's `_generate`/`_agenerate` leaves the finish reason in `generation_info` (OpenAI)
    or `llm_output` (Anthropic); only the public `invoke` path copies it into the message.
    """
    llm_output: dict[str, Any] = {}
    if hasattr(reply, "generations"):  # ChatResult
        llm_output = reply.llm_output or {}
        reply = reply.generations[0] if reply.generations else None
    info: dict[str, Any] = {}
    if hasattr(reply, "generation_info"):  # ChatGeneration
        info = reply.generation_info or {}
        reply = reply.message
    return reply, info, llm_output


def usage_of(reply: BaseMessage | ChatGeneration | ChatResult) -> tuple[int, int]:
    """(input, output) tokens of a reply, from LangChain's usage_metadata or the raw metadata."""
    message, _, llm_output = _parts(reply)
    usage = getattr(message, "usage_metadata", None)
    if usage:
        return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    meta = getattr(message, "response_metadata", None) or {}
    raw = meta.get("usage") or meta.get("token_usage") or llm_output.get("usage")
    raw = raw or llm_output.get("token_usage") or {}
    if not isinstance(raw, dict):
        return 0, 0
    inp = raw.get("input_tokens", raw.get("prompt_tokens")) or 0
    out = raw.get("output_tokens", raw.get("completion_tokens")) or 0
    return int(inp), int(out)


_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}


def finish_reason_of(reply: BaseMessage | ChatGeneration | ChatResult) -> str | None:
    """'stop', 'length' (truncated: attribution's second rung), 'tool_calls', other raw reasons
    lower-cased (e.g. 'refusal', 'content_filter'), or None when the provider gave none.

    Pass the ChatResult when you have it: from `_agenerate` the message alone lacks the reason.
    """
    message, info, llm_output = _parts(reply)
    meta = getattr(message, "response_metadata", None) or {}
    raw = None
    for source in (meta, info, llm_output):
        raw = source.get("finish_reason") or source.get("stop_reason")
        if raw:
            break
    if not raw or not isinstance(raw, str):
        return None
    return _FINISH.get(raw.lower(), raw.lower())

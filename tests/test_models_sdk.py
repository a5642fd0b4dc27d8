"""The model layer driven through the real LangChain chat models and provider SDKs, on loopback.

Every HTTP request goes to tests/fakeapi.py on 127.0.0.1; faults are injected there, so the SDKs'
own retry, timeout and usage parsing code is what is being tested, not a mock of it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from fapo.errors import FapoError
from fapo.models import (
    ModelSpec,
    cost_usd,
    finish_reason_of,
    make_chat_model,
    parse_spec,
    price,
    rate_limiter,
    usage_of,
)
from fapo.settings import Price, Settings

sys.path.insert(0, str(Path(__file__).parent))
from fakeapi import FakeAPI, Fault, Reply  # noqa: E402

PROVIDERS = ("openai", "anthropic")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited keys, base URLs or gateways: each test states what it needs."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "OPENAI_", "LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def api():
    with FakeAPI() as server:
        yield server


def spec_for(provider: str, api: FakeAPI, model: str = "fake") -> ModelSpec:
    base = api.openai_base if provider == "openai" else api.url
    return parse_spec(f"{provider}:{model}@{base}")


# --- spec parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "provider", "model", "base_url", "options"),
    [
        ("anthropic:claude-haiku-4-5", "anthropic", "claude-haiku-4-5", None, {}),
        ("openai:gpt-4.1-mini", "openai", "gpt-4.1-mini", None, {}),
        (
            "openai:meta-llama/Llama-3.1-8B@http://127.0.0.1:8000/v1",
            "openai",
            "meta-llama/Llama-3.1-8B",
            "http://127.0.0.1:8000/v1",
            {},
        ),
        (
            "openai:llama3.1:8b@http://localhost:11434/v1/",
            "openai",
            "llama3.1:8b",
            "http://localhost:11434/v1",
            {},
        ),
        ("anthropic:fake@http://127.0.0.1:9", "anthropic", "fake", "http://127.0.0.1:9", {}),
        ("sim:default", "sim", "default", None, {}),
        (
            "sim:noisy?latency_ms=50&noise=0.1",
            "sim",
            "noisy",
            None,
            {"latency_ms": "50", "noise": "0.1"},
        ),
        ("  openai:gpt-4.1  ", "openai", "gpt-4.1", None, {}),
    ],
)
def test_parse_spec_accepts(text, provider, model, base_url, options) -> None:
    spec = parse_spec(text)
    assert (spec.provider, spec.model, spec.base_url, spec.options) == (
        provider,
        model,
        base_url,
        options,
    )
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "gpt-4.1",
        "azure:gpt-4.1",
        "openai:",
        "anthropic:@http://127.0.0.1:8000",
        "openai:gpt@ftp://127.0.0.1/v1",
        "openai:gpt@127.0.0.1:8000/v1",
        "openai:gpt@http://127.0.0.1:8000/v1?x=1",
        "sim:",
        "sim:bad name",
        "sim:x?latency_ms",
        "sim:x?1bad=2",
        "openai:gpt 4",
    ],
)
def test_parse_spec_rejects_with_one_line(text: str) -> None:
    with pytest.raises(FapoError) as exc:
        parse_spec(text)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"'{text}'" in msg
    assert "sim:NAME" in msg and "openai:MODEL@http" in msg


# --- usage, finish reason and cost through the real clients --------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("finish", ["stop", "length"])
def test_usage_finish_and_cost_parsed(provider: str, finish: str) -> None:
    reply = Reply("forty-two", finish=finish, input_tokens=1234, output_tokens=56)
    with FakeAPI(lambda _req: reply) as api:
        spec = spec_for(provider, api)
        settings = Settings(prices={str(spec): Price(input=3.0, output=15.0)})
        model = make_chat_model(spec, settings, temperature=0.0, max_tokens=64, timeout=5)
        msg = model.invoke("What is six times seven?")
        streamed = functools.reduce(lambda a, b: a + b, model.stream("and streamed?"))
        sent = api.requests[0].body

    assert msg.content == "forty-two"
    assert usage_of(msg) == (1234, 56)
    assert finish_reason_of(msg) == finish
    assert cost_usd(str(spec), settings, *usage_of(msg)) == pytest.approx(
        (1234 * 3.0 + 56 * 15.0) / 1e6
    )
    # the same facts arrive when the chat model streams (LangGraph's "messages" mode does)
    assert streamed.content == "forty-two"
    assert usage_of(streamed) == (1234, 56)
    assert finish_reason_of(streamed) == finish
    # call settings reached the wire
    assert sent["model"] == "fake"
    assert sent["temperature"] == 0.0
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 64
    assert "six times seven" in api.requests[0].prompt


@pytest.mark.parametrize("provider", PROVIDERS)
def test_finish_reason_and_usage_from_raw_generate_result(provider: str) -> None:
    """What an instrumented wrapper sees when it calls the provider's `_agenerate` directly."""
    import asyncio

    from langchain_core.messages import HumanMessage

    with FakeAPI(
        lambda _req: Reply("Par", finish="length", input_tokens=9, output_tokens=2)
    ) as api:
        model = make_chat_model(spec_for(provider, api), Settings(), timeout=5)
        result = asyncio.run(model._agenerate([HumanMessage("capital of France?")]))
    assert finish_reason_of(result) == "length"
    assert finish_reason_of(result.generations[0]) == "length" or provider == "anthropic"
    assert usage_of(result) == (9, 2)


# --- retries and timeouts -------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_then_200_is_retried(provider: str, api: FakeAPI) -> None:
    api.script(Fault(status=429))
    model = make_chat_model(spec_for(provider, api), Settings(), max_retries=2, timeout=5)
    msg = model.invoke("hello")
    assert msg.content == "ok"
    assert len(api.requests) == 2
    assert [r.headers.get("x-stainless-retry-count") for r in api.requests] == ["0", "1"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_persistent_500_raises_after_bounded_retries(provider: str, api: FakeAPI) -> None:
    api.fail_when("", Fault(status=500))
    model = make_chat_model(spec_for(provider, api), Settings(), max_retries=2, timeout=5)
    with pytest.raises(Exception) as exc:
        model.invoke("hello")
    assert getattr(exc.value, "status_code", None) == 500
    assert len(api.requests) == 3  # the first attempt and two retries, no more


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_is_retried(provider: str, api: FakeAPI) -> None:
    api.script(Fault(delay_s=3.0))
    model = make_chat_model(spec_for(provider, api), Settings(), max_retries=1, timeout=0.3)
    start = time.monotonic()
    msg = model.invoke("hello")
    assert msg.content == "ok"
    assert len(api.requests) == 2
    assert time.monotonic() - start < 2.5  # the slow attempt was abandoned, not waited out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_without_retries_left_raises(provider: str, api: FakeAPI) -> None:
    api.fail_when("", Fault(delay_s=3.0))
    model = make_chat_model(spec_for(provider, api), Settings(), max_retries=0, timeout=0.2)
    with pytest.raises(Exception) as exc:
        model.invoke("hello")
    assert "timeout" in type(exc.value).__name__.lower()
    assert len(api.requests) == 1


def test_default_timeout_and_retries_are_bounded(api: FakeAPI) -> None:
    model = make_chat_model(spec_for("openai", api), Settings())
    assert 0 < model.request_timeout <= 300
    assert 0 < model.max_retries <= 5
    model = make_chat_model(spec_for("anthropic", api), Settings())
    assert 0 < model.default_request_timeout <= 300
    assert 0 < model.max_retries <= 5


# --- rate limiting ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "key"), [("openai", "openai-compatible"), ("anthropic", "anthropic")]
)
def test_rate_limiter_is_shared_and_spaces_requests(provider: str, key: str, api: FakeAPI) -> None:
    rps = 10.0 + PROVIDERS.index(provider) / 10  # a bucket of its own for this test
    settings = Settings(rate_limits={key: rps})
    spec = spec_for(provider, api)
    first = make_chat_model(spec, settings, timeout=5)
    second = make_chat_model(spec, settings, temperature=0.5, timeout=5)
    assert first.rate_limiter is not None
    assert first.rate_limiter is second.rate_limiter is rate_limiter(key, settings)
    for model in (first, second, first, second):
        model.invoke("hi")
    times = [r.at for r in api.requests]
    assert len(times) == 4
    # Three intervals of 1/rps (~0.3 s); without the limiter they arrive within milliseconds.
    # Measured at the server, so one request's client start-up delay may shorten a single gap:
    # the span with 0.1 s of slack is the robust fact.
    assert times[-1] - times[0] >= 3 / rps - 0.1, times


def test_no_rate_limit_configured_means_no_limiter(api: FakeAPI) -> None:
    model = make_chat_model(spec_for("openai", api), Settings(rate_limits={"anthropic": 1.0}))
    assert model.rate_limiter is None
    # a real OpenAI spec uses the "openai" bucket, not the compatible-server one
    assert parse_spec("openai:gpt-4.1").rate_key == "openai"
    assert parse_spec(f"openai:x@{api.openai_base}").rate_key == "openai-compatible"


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("anthropic:claude-haiku-4-5", "ANTHROPIC_API_KEY"),
        ("openai:gpt-4.1-mini", "OPENAI_API_KEY"),
    ],
)
def test_missing_key_is_one_line_error_naming_the_variable(text: str, env: str) -> None:
    with pytest.raises(FapoError) as exc:
        make_chat_model(parse_spec(text), Settings())
    msg = str(exc.value)
    assert "\n" not in msg and env in msg and text in msg


@pytest.mark.parametrize("provider", PROVIDERS)
def test_local_server_without_key_gets_placeholder(provider: str, api: FakeAPI) -> None:
    make_chat_model(spec_for(provider, api), Settings(), timeout=5).invoke("hi")
    headers = api.requests[0].headers
    sent = headers.get("authorization", "") + headers.get("x-api-key", "")
    assert "not-needed" in sent


@pytest.mark.parametrize(
    ("provider", "env"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
def test_key_from_environment_is_sent_and_never_shown(
    provider: str, env: str, api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-" + "x" * 24
    monkeypatch.setenv(env, secret)
    model = make_chat_model(spec_for(provider, api), Settings(), timeout=5)
    model.invoke("hi")
    headers = api.requests[0].headers
    assert secret in headers.get("authorization", "") + headers.get("x-api-key", "")
    assert secret not in repr(model) and secret not in str(model.model_dump())


def test_unknown_call_setting_is_one_line_error(api: FakeAPI) -> None:
    with pytest.raises(FapoError) as exc:
        make_chat_model(spec_for("openai", api), Settings(), temprature=0.2)
    assert "temprature" in str(exc.value) and "temperature" in str(exc.value)


# --- anthropic base URL from the environment -------------------------------------------------


def test_anthropic_base_url_from_environment(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    msg = make_chat_model(parse_spec("anthropic:fake"), Settings(), timeout=5).invoke("hi")
    assert msg.content == "ok" and len(api.requests) == 1


# --- prices, usage and finish reasons (pure) --------------------------------------------------


def test_price_lookup() -> None:
    settings = Settings(
        prices={
            "openai:gpt-4.1-mini": Price(input=0.4, output=1.6),
            "openai:qwen@http://127.0.0.1:8000/v1": Price(input=0.1, output=0.2),
        }
    )
    assert price("openai:gpt-4.1-mini", settings) == (0.4, 1.6)
    assert price("openai:qwen@http://127.0.0.1:8000/v1", settings) == (0.1, 0.2)
    # a compatible server is not billed at the vendor's price for the same model name
    assert price("openai:gpt-4.1-mini@http://127.0.0.1:8000/v1", settings) is None
    assert price("anthropic:claude-haiku-4-5", settings) is None
    assert cost_usd("anthropic:claude-haiku-4-5", settings, 10**6, 10**6) == 0.0
    assert price("sim:default?latency_ms=5", settings) == (0.0, 0.0)
    assert cost_usd("openai:gpt-4.1-mini", settings, 2_000_000, 500_000) == pytest.approx(1.6)
    with pytest.raises(FapoError):
        price("bogus", settings)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"stop_reason": "end_turn"}, "stop"),
        ({"stop_reason": "stop_sequence"}, "stop"),
        ({"stop_reason": "max_tokens"}, "length"),
        ({"stop_reason": "tool_use"}, "tool_calls"),
        ({"stop_reason": "refusal"}, "refusal"),
        ({"finish_reason": "stop"}, "stop"),
        ({"finish_reason": "length"}, "length"),
        ({"finish_reason": "content_filter"}, "content_filter"),
        ({}, None),
    ],
)
def test_finish_reason_normalized(meta: dict, expected: str | None) -> None:
    assert finish_reason_of(AIMessage(content="x", response_metadata=meta)) == expected


def test_usage_falls_back_to_raw_metadata() -> None:
    openai_like = AIMessage(
        content="x", response_metadata={"token_usage": {"prompt_tokens": 9, "completion_tokens": 4}}
    )
    anthropic_like = AIMessage(
        content="x", response_metadata={"usage": {"input_tokens": 3, "output_tokens": 2}}
    )
    assert usage_of(openai_like) == (9, 4)
    assert usage_of(anthropic_like) == (3, 2)
    assert usage_of(AIMessage(content="x")) == (0, 0)


# --- simulator wiring and lazy imports --------------------------------------------------------


def test_sim_spec_goes_to_make_sim_with_typed_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def make_sim(name: str, **settings):
        seen.update(name=name, **settings)
        return "sim-model"

    monkeypatch.setitem(sys.modules, "fapo.sim", types.SimpleNamespace(make_sim=make_sim))
    out = make_chat_model(
        parse_spec("sim:noisy?latency_ms=50&mode=fast"),
        Settings(),
        temperature=0.7,
        max_tokens=None,
    )
    assert out == "sim-model"
    assert seen == {"name": "noisy", "latency_ms": 50, "mode": "fast", "temperature": 0.7}
    seen.clear()
    make_chat_model(parse_spec("sim:x?temperature=0.5&on=true"), Settings(), temperature=0.0)
    assert seen == {"name": "x", "temperature": 0.0, "on": True}


def test_importing_models_does_not_import_provider_packages() -> None:
    code = (
        "import sys, fapo.models; "
        "heavy = [m for m in ('langchain_openai', 'langchain_anthropic', 'openai', 'anthropic') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# --- end to end: a tenant evaluated by the engine against a loopback provider -------------------

E2E_CHAIN = """
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    raw: str
    answer: str


def build(ctx: Any) -> StateGraph:
    tpl = ctx.prompt("answer", "question")
    llm = ctx.llm(temperature=0.0, max_tokens=32, timeout=5, max_retries=1)

    async def answer(state: State) -> dict:
        reply = await llm.ainvoke(tpl.render(question=state["question"]))
        return {"raw": reply.content}

    def clean(state: State) -> dict:
        return {"answer": state["raw"].strip().rstrip(".")}

    graph = StateGraph(State)
    graph.add_node("answer", answer)
    graph.add_node("clean", clean)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", "clean")
    graph.add_edge("clean", END)
    return graph
"""

E2E_SCORER = """
def score(example, prediction):
    return 1.0 if prediction == example.label else 0.0
"""

CAPITALS = {"France": "Paris", "Italy": "Rome", "Peru": "Lima", "Chad": "N'Djamena"}


def _capital_reply(req) -> Reply:
    for country, capital in CAPITALS.items():
        if f"capital of {country}" in req.prompt:
            return Reply(f" {capital}.", input_tokens=20, output_tokens=3)
    return Reply("I do not know", input_tokens=20, output_tokens=4)


def _write_tenant(root: Path, task_model: str) -> None:
    import json

    (root / "prompts").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "tenant.yaml").write_text(
        f"name: e2e\nmodels:\n  task: '{task_model}'\nprediction: answer\nscope: [prompt]\n"
    )
    (root / "chain.py").write_text(E2E_CHAIN)
    (root / "scorer.py").write_text(E2E_SCORER)
    (root / "prompts" / "answer.md").write_text(
        "Answer in one word. What is the capital of {question}?\n"
    )
    rows = [
        {"id": c.lower(), "inputs": {"question": c}, "label": cap} for c, cap in CAPITALS.items()
    ]
    rows.append({"id": "atlantis", "inputs": {"question": "Atlantis"}, "label": "Poseidonia"})
    for split in ("train", "val", "test"):
        (root / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_evaluate_end_to_end_with_a_persistently_failing_example(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from fapo.evaluate import evaluate
    from fapo.tenant import load_tenant

    with FakeAPI(_capital_reply) as api:
        api.fail_when("capital of Chad", Fault(status=500))
        if provider == "openai":
            task_model = f"openai:fake@{api.openai_base}"
        else:  # the real Anthropic spec, pointed at the fake by the SDK's own variable
            task_model = "anthropic:fake"
            monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
            monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        _write_tenant(tmp_path / "tenant", task_model)
        settings = Settings(
            root=tmp_path,
            prices={task_model: Price(input=2.0, output=10.0)},
            # 20.5 rps: a bucket no other test shares (limiters are per provider per process)
            rate_limits={provider if provider == "anthropic" else "openai-compatible": 20.5},
        )
        tenant = load_tenant(tmp_path / "tenant", settings)
        out = tmp_path / "eval"
        summary = evaluate(tenant, "val", out_dir=out, concurrency=3, use_cache=False)
        # a second evaluation in the same process (the loop does this for every candidate)
        again = evaluate(
            tenant.variant({}), "val", out_dir=tmp_path / "again", concurrency=3, use_cache=False
        )

    records = {
        r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    assert summary.n == 5 and again.n == 5
    assert summary.scores == {
        "france": 1.0,
        "italy": 1.0,
        "peru": 1.0,
        "chad": 0.0,
        "atlantis": 0.0,
    }
    assert summary.mean == pytest.approx(0.6) and again.mean == pytest.approx(0.6)
    assert summary.errors == 1

    failed = records["chad"]
    assert failed["error"]["step"] == "answer"
    assert failed["prediction"] is None
    answer_step = next(s for s in failed["steps"] if s["step"] == "answer")
    assert answer_step["calls"] and "500" in (answer_step["calls"][0]["error"] or "")
    assert not any(s["step"] == "clean" and s["update"] for s in failed["steps"])
    assert summary.steps["answer"]["errors"] == 1

    ok = records["france"]
    assert ok["error"] is None and ok["prediction"] == "Paris"
    call = next(s for s in ok["steps"] if s["step"] == "answer")["calls"][0]
    assert (call["input_tokens"], call["output_tokens"]) == (20, 3)
    # every HTTP attempt is metered: four answered calls and the failing call's two attempts
    # (first + max_retries=1, retried by fapo, not the SDK); only answers have tokens and a price
    assert summary.calls == 6 and summary.failed_calls == 2
    assert summary.input_tokens == 80 and summary.output_tokens == 13
    assert summary.cost_usd == pytest.approx((80 * 2.0 + 13 * 10.0) / 1e6)
    assert summary.call_errors == {"server_error": 1} and summary.infra_errors == 1
    assert failed["error"]["kind"] == "server_error" and failed["error"]["infrastructure"]
    assert answer_step["calls"][0]["attempts"] == 2
    assert sum(r["calls"] for r in records.values()) == summary.calls
    assert api.count("capital of Chad") == 4
    assert api.count() == 6 * 2
    # the SDK itself never retries: fapo's attempts all carry the SDK's retry count 0
    assert {r.headers.get("x-stainless-retry-count") for r in api.requests} == {"0"}
    # concurrent examples and retries share one bucket: each evaluation's 6 attempts span about
    # 5 intervals of the limit (without it they arrive within milliseconds). Spans with 0.1 s of
    # slack, not single gaps, because client start-up can delay a request towards the next.
    times = [r.at for r in api.requests]
    for run in (times[:6], times[6:]):
        assert run[-1] - run[0] >= 5 / 20.5 - 0.1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_engine_records_truncation_from_real_providers(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from fapo.evaluate import evaluate
    from fapo.tenant import load_tenant

    with FakeAPI(lambda _req: Reply("Par", finish="length")) as api:
        base = api.openai_base if provider == "openai" else api.url
        _write_tenant(tmp_path / "tenant", f"{provider}:fake@{base}")
        tenant = load_tenant(tmp_path / "tenant", Settings(root=tmp_path))
        summary = evaluate(tenant, "val", out_dir=tmp_path / "eval", use_cache=False)
    records = [
        json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()
    ]
    reasons = {c["finish_reason"] for r in records for s in r["steps"] for c in s["calls"]}
    assert reasons == {"length"}
    assert summary.steps["answer"]["truncated"] == 5

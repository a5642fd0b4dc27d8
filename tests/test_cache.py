"""The cache contract: an unchanged variant costs zero model calls; changing only the last
prompt re-issues only the last step's calls."""

from __future__ import annotations

from pathlib import Path

from fapo.cache import CallCache
from fapo.evaluate import evaluate
from fapo.tenant import load_tenant


def _fixed(project):
    t = load_tenant("demo-qa", project)
    fixes = Path(t.root / "fixes")
    files = {f"prompts/{p.name}": p.read_text() for p in (fixes / "prompts").glob("*.md")}
    files["structure.yaml"] = (fixes / "structure.yaml").read_text()
    files["params.yaml"] = (fixes / "params.yaml").read_text()
    return t.variant(files)


def test_unchanged_variant_is_free_and_last_prompt_edit_reissues_only_its_calls(project, tmp_path):
    v = _fixed(project)
    cache = CallCache(tmp_path / "cache.sqlite")
    cold = evaluate(v, "val", cache=cache)
    llm_steps = {k: s["calls"] for k, s in cold.steps.items() if s["calls"]}
    assert set(llm_steps) == {"hop_retrieve", "answer"}, cold.steps  # two LLM steps
    assert cold.calls == sum(llm_steps.values()) > 0 and cold.cache_hits == 0

    warm = evaluate(v, "val", cache=cache, out_dir=tmp_path / "warm")
    assert warm.calls == 0 and warm.cache_hits == cold.calls
    assert warm.scores == cold.scores
    assert '"cache_hit": true' in (tmp_path / "warm" / "results.jsonl").read_text()

    edited = v.variant({"prompts/answer.md": v.files["prompts/answer.md"] + "\nBe exact.\n"})
    again = evaluate(edited, "val", cache=cache)
    assert again.steps["hop_retrieve"]["calls"] == 0
    assert again.steps["answer"]["calls"] == llm_steps["answer"]
    assert again.calls == llm_steps["answer"]
    cache.close()


def test_no_cache_issues_every_call(project):
    v = _fixed(project)
    a = evaluate(v, "val", use_cache=False)
    b = evaluate(v, "val", use_cache=False)
    assert a.calls == b.calls > 0 and b.cache_hits == 0


def test_temperature_0_calls_are_one_call_across_repeats_and_sampling_ones_are_not(
    project, tmp_path
):
    """A call at temperature 0 has no draws: its repeats replay repeat 0 (same answers, no new
    call); at a temperature above 0 every repeat of the sampling step is its own call."""
    import yaml

    v = _fixed(project)
    params = yaml.safe_load(v.files["params.yaml"])
    assert params["temperature"] == 0
    cache = CallCache(tmp_path / "cache.sqlite")
    once = evaluate(v, "val", cache=cache, limit=10)
    thrice = evaluate(v, "val", cache=cache, limit=10, repeats=3, out_dir=tmp_path / "r3")
    assert once.calls > 0 and thrice.calls == 0 and thrice.cache_hits == 3 * once.calls
    assert thrice.scores == once.scores
    hot = v.variant({"params.yaml": yaml.safe_dump({**params, "temperature": 0.9})})
    h1 = evaluate(hot, "val", cache=cache, limit=10)
    h3 = evaluate(hot, "val", cache=cache, limit=10, repeats=3)
    # the answer step samples: repeats 1 and 2 are new calls; hop_retrieve (temperature 0,
    # the same messages) replays
    assert h1.steps["answer"]["calls"] > 0
    assert h3.steps["answer"]["calls"] == 2 * h1.steps["answer"]["calls"]
    assert h3.steps["hop_retrieve"]["calls"] == 0
    cache.close()


def test_concurrent_asks_for_one_key_cost_one_call(project, tmp_path):
    """Single flight: repeats of a temperature-0 call that start together (a slow model, as a
    real provider is) wait for the first one's answer instead of each paying; sampling calls
    at the same moment stay separate draws."""
    import asyncio

    from langchain_core.messages import HumanMessage

    from fapo.llm import Meter, ModelFactory
    from fapo.runtime import REPEAT

    t = load_tenant("demo-qa", project)
    models = {"task": "sim:slow?latency_ms=40"}
    msg = [HumanMessage("Question: In what year was the Milkaith Academy founded?")]

    async def ask(temperature: float, n: int) -> tuple[Meter, list[str]]:
        cache, meter = CallCache(tmp_path / f"c{temperature}.sqlite"), Meter()
        llm = ModelFactory(models, t.settings, cache, meter)("task", temperature=temperature)

        async def one(r: int) -> str:
            REPEAT.set(r)  # each task runs in its own context copy
            return str((await llm.ainvoke(msg)).content)

        out = await asyncio.gather(*(one(r) for r in range(n)))
        cache.close()
        return meter, out

    cold, answers = asyncio.run(ask(0.0, 5))
    assert cold.calls == 1 and cold.cache_hits == 4 and len(set(answers)) == 1
    hot, _ = asyncio.run(ask(0.7, 5))
    assert hot.calls == 5 and hot.cache_hits == 0


def test_results_are_written_in_example_order_whatever_order_they_finish_in(project, tmp_path):
    """Readers that take the first records (a brief's traces) must see the same examples on
    every run: results.jsonl is sorted by (example, repeat) when the evaluation ends."""
    import json

    from fapo.evaluate import _sorted_into

    partial = tmp_path / "results.jsonl.partial"
    rows = [{"index": i, "repeat": r, "id": f"e{i}"} for i in (3, 0, 2, 1) for r in (1, 0)]
    partial.write_text("".join(json.dumps(x) + "\n" for x in rows))
    _sorted_into(partial, tmp_path / "results.jsonl")
    got = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(x["index"], x["repeat"]) for x in got] == [(i, r) for i in range(4) for r in (0, 1)]
    assert not partial.exists()
    s = evaluate(_fixed(project), "val", out_dir=tmp_path / "ev", repeats=2, concurrency=8)
    lines = (tmp_path / "ev" / "results.jsonl").read_text().splitlines()
    keys = [(json.loads(x)["index"], json.loads(x)["repeat"]) for x in lines]
    assert keys == sorted(keys) and len(keys) == 2 * s.n

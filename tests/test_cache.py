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


def test_repeat_index_is_part_of_the_key(project, tmp_path):
    v = _fixed(project)
    cache = CallCache(tmp_path / "c.sqlite")
    one = evaluate(v, "val", cache=cache, repeats=1)
    two = evaluate(v, "val", cache=cache, repeats=2)
    assert two.calls == one.calls  # repeat 0 replayed, repeat 1 issued fresh
    cache.close()

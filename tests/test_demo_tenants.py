"""The two demo tenants: the planted ceilings per level (applied by hand, no agent), attribution of
each bottleneck to its step and level, the generators, and the offline CLI evaluation."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fapo.attribute import attribute
from fapo.evaluate import evaluate
from fapo.records import Example
from fapo.tenant import Tenant, load_tenant

ROOT = Path(__file__).resolve().parents[1]
TENANTS = ROOT / "tenants"
SPLITS = ("train", "val", "test")

#: Which documented fix files each README row applies (paths under fixes/ -> tenant paths).
FIXES = {
    "demo-qa": {
        "prompt": {"prompts/answer.md": "prompts/answer.md"},
        "parameter": {"params.yaml": "params.yaml"},
        "structure": {
            "structure.yaml": "structure.yaml",
            "prompts/hop_query.md": "prompts/hop_query.md",
        },
    },
    "demo-instructions": {
        "prompt": {"prompts/write.md": "prompts/write.md"},
        "parameter": {"params.yaml": "params.yaml"},
        "structure": {"structure.yaml": "structure.yaml"},
    },
}
ROWS = {
    "baseline": (),
    "prompt": ("prompt",),
    "parameter": ("parameter",),
    "prompt + structure": ("prompt", "structure"),
    "prompt + parameter": ("prompt", "parameter"),
    "prompt + parameter + structure": ("prompt", "parameter", "structure"),
}


def variant(name: str, levels: tuple[str, ...]) -> Tenant:
    root = TENANTS / name
    files: dict[str, str | None] = {}
    for level in levels:
        for src, dst in FIXES[name][level].items():
            files[dst] = (root / "fixes" / src).read_text(encoding="utf-8")
    return load_tenant(root).variant(files)


def readme_table(name: str) -> dict[str, dict[str, float]]:
    """The `| variant | train | val | test |` rows of the tenant README."""
    text = (TENANTS / name / "README.md").read_text(encoding="utf-8")
    rows: dict[str, dict[str, float]] = {}
    for m in re.finditer(r"^\| ([a-z +]+?) \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|$", text, re.M):
        rows[m.group(1)] = dict(zip(SPLITS, map(float, m.groups()[1:]), strict=True))
    return rows


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in FIXES:
        out[name] = {}
        for row, levels in ROWS.items():
            v = variant(name, levels)
            out[name][row] = {
                split: evaluate(
                    v,
                    split,
                    out_dir=tmp_path_factory.mktemp("eval"),
                    use_cache=False,
                    concurrency=8,
                ).mean
                for split in SPLITS
            }
    return out


@pytest.mark.parametrize("name", list(FIXES))
def test_readme_states_the_measured_score_of_every_level(name: str, measured: dict) -> None:
    table = readme_table(name)
    assert set(table) == set(ROWS), f"README rows {sorted(table)}"
    for row, scores in measured[name].items():
        for split in SPLITS:
            assert scores[split] == pytest.approx(table[row][split], abs=0.0005), (row, split)


@pytest.mark.parametrize("name", list(FIXES))
def test_each_fix_is_capped_by_the_next_level(name: str, measured: dict) -> None:
    m = measured[name]
    for split in ("val", "test"):
        base, p, pp, full = (
            m[r][split]
            for r in ("baseline", "prompt", "prompt + parameter", "prompt + parameter + structure")
        )
        assert base < p < pp < full, (split, base, p, pp, full)
        assert full >= 0.95
        assert base <= 0.2
        # a lower level alone cannot reach what the higher fix reaches
        assert m["prompt + structure"][split] < full
        assert m["parameter"][split] < pp


def _clusters(t: Tenant, tmp_path: Path) -> dict[tuple[str, str], int]:
    evaluate(t, "train", out_dir=tmp_path, use_cache=False)
    report = attribute(t, tmp_path / "results.jsonl")
    out: dict[tuple[str, str], int] = {}
    for c in report["clusters"]:
        out[(c["step"], c["level"])] = out.get((c["step"], c["level"]), 0) + len(c["example_ids"])
    return out


def test_demo_qa_attribution_finds_each_planted_bottleneck(tmp_path: Path) -> None:
    base = _clusters(variant("demo-qa", ()), tmp_path / "a")
    assert base == {
        ("answer", "prompt"): 16,
        ("retrieve", "parameter"): 12,
        ("answer", "structure"): 12,
    }
    after_prompt = _clusters(variant("demo-qa", ("prompt",)), tmp_path / "b")
    assert after_prompt == {("retrieve", "parameter"): 12, ("answer", "structure"): 12}
    after_param = _clusters(variant("demo-qa", ("prompt", "parameter")), tmp_path / "c")
    assert after_param == {("answer", "structure"): 12}


def test_demo_qa_hop_without_step_reasoning_is_sent_back_to_the_prompt(tmp_path: Path) -> None:
    """With the hop but a prompt that only asks for the bare answer, bridge questions stop at the
    bridge entity; the check says so at prompt level."""
    root = TENANTS / "demo-qa"
    only = (
        (root / "prompts" / "answer.md")
        .read_text()
        .replace(
            "passages below.", "passages below. Answer with only the final answer, no explanation."
        )
    )
    t = variant("demo-qa", ("parameter", "structure")).variant({"prompts/answer.md": only})
    evaluate(t, "train", out_dir=tmp_path, use_cache=False)
    report = attribute(t, tmp_path / "results.jsonl")
    assert [(c["step"], c["level"], len(c["example_ids"])) for c in report["clusters"]] == [
        ("answer", "prompt", 12)
    ]
    assert "bridge entity" in report["clusters"][0]["cause"]


def test_demo_instructions_attribution_finds_each_planted_bottleneck(tmp_path: Path) -> None:
    base = _clusters(variant("demo-instructions", ()), tmp_path / "a")
    assert base[("write", "prompt")] >= 30 and set(base) <= {
        ("write", "prompt"),
        ("write", "structure"),
    }
    after_prompt = _clusters(variant("demo-instructions", ("prompt",)), tmp_path / "b")
    assert after_prompt == {("write", "parameter"): 11, ("write", "structure"): 11}
    after_param = _clusters(variant("demo-instructions", ("prompt", "parameter")), tmp_path / "c")
    assert after_param == {("write", "structure"): 11}


def test_bridge_passages_are_out_of_reach_of_the_question_at_every_allowed_k() -> None:
    t = load_tenant(TENANTS / "demo-qa")
    k_max = int(t.spec.params["k"].max or 0)
    graph, ctx = (
        variant("demo-qa", ())
        .variant({"params.yaml": f"k: {k_max}\ntemperature: 0.0\nmax_tokens: 128\n"})
        .build(lambda role, **kw: None)
    )
    search = ctx.functions["search"]
    bridges = 0
    for split in SPLITS:
        for ex in t.examples(split):
            found = {p.split("]")[0][1:] for p in search(ex.inputs["question"])}
            assert ex.label["supporting"][0] in found or ex.label["bridge"] is None
            if ex.label["bridge"]:
                bridges += 1
                assert ex.label["supporting"][1] not in found, ex.id
                assert ex.label["bridge"] not in ex.inputs["question"]
    assert bridges == 36


@pytest.mark.parametrize("name", list(FIXES))
def test_generator_reproduces_the_committed_files(name: str, tmp_path: Path) -> None:
    src = TENANTS / name
    shutil.copy(src / "generate.py", tmp_path / "generate.py")
    subprocess.run(
        [sys.executable, str(tmp_path / "generate.py")],
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    produced = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl"))
    assert produced
    for rel in produced:
        assert (tmp_path / rel).read_bytes() == (src / rel).read_bytes(), rel


@pytest.mark.parametrize("name", list(FIXES))
def test_splits_are_disjoint_and_sized(name: str) -> None:
    t = load_tenant(TENANTS / name)
    seen: dict[str, str] = {}
    for split in SPLITS:
        rows = list(t.examples(split))
        assert len(rows) == 40
        for ex in rows:
            key = json.dumps(ex.inputs, sort_keys=True)
            assert key not in seen, (ex.id, seen.get(key))
            seen[key] = ex.id


# --- demo-instructions: the deterministic count enforcement --------------------------------------


@pytest.fixture(scope="module")
def enforce():
    _, ctx = load_tenant(TENANTS / "demo-instructions").build(lambda role, **kw: None)
    return ctx.functions["enforce_counts"]


def _verify(constraints: list[dict], text: str) -> dict:
    scorer = load_tenant(TENANTS / "demo-instructions").scorer
    return scorer(Example("x", {}, {"constraints": constraints}), text).details["constraints"]


@pytest.mark.parametrize("n", [5, 9, 12, 20])
def test_enforce_counts_fixes_word_counts_and_keeps_other_constraints(enforce, n: int) -> None:
    cons = [
        {"kind": "exact_words", "n": n},
        {"kind": "include", "word": "lantern"},
        {"kind": "end", "phrase": "See you at dawn."},
    ]
    text = "The market is old. It is about lantern and more things here tonight. See you at dawn."
    fixed = enforce(text, {"constraints": cons, "topic": "t"})
    assert all(_verify(cons, fixed).values()), fixed


@pytest.mark.parametrize(("have", "want"), [(1, 3), (5, 2), (3, 3), (0, 2)])
def test_enforce_counts_fixes_bullet_counts(enforce, have: int, want: int) -> None:
    cons = [{"kind": "exact_bullets", "n": want}, {"kind": "lowercase"}]
    text = "\n".join(f"- point {i} about it." for i in range(have)) or "one. two. three."
    fixed = enforce(text, {"constraints": cons, "topic": "the canal"})
    assert all(_verify(cons, fixed).values()), fixed


def test_enforce_counts_leaves_texts_without_count_constraints_alone(enforce) -> None:
    text = "Anything at all, with commas."
    assert enforce(text, {"constraints": [{"kind": "no_commas"}]}) == text
    assert enforce(None, {"constraints": []}) is None


def test_scorer_verifiers_reject_what_they_should() -> None:
    cons = [{"kind": "start", "word": "tonight"}, {"kind": "title"}, {"kind": "min_words", "n": 4}]
    assert _verify(cons, "Tonight we go out, all of us.") == {
        "0:start": True,
        "1:title": False,
        "2:min_words": True,
    }
    assert _verify(cons, "<<x>> hi") == {"0:start": False, "1:title": True, "2:min_words": False}


# --- the CLI, offline -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIXES))
def test_cli_eval_runs_offline_in_seconds_with_per_step_artifacts(
    name: str, tmp_path: Path
) -> None:
    fapo = Path(sys.executable).with_name("fapo")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(fapo), "eval", name, "--split", "val", "--no-cache", "--out", str(tmp_path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - t0 < 30
    summary = json.loads(proc.stdout)
    assert summary["n"] == 40 and summary["errors"] == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    steps = {"demo-qa": ["retrieve", "answer"], "demo-instructions": ["write"]}[name]
    assert all([s["step"] for s in r["steps"]] == steps for r in records)
    calls = [c for r in records for s in r["steps"] for c in s["calls"]]
    assert calls and all(c["model"] == "sim:default" and c["cost_usd"] == 0 for c in calls)
    assert "simulat" in (tmp_path / "summary.md").read_text().lower()

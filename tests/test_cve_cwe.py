"""The real-data security tenant `tenants/cve-cwe`: its data, its preparation, its chain and checks."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import types
from pathlib import Path
from typing import Any

import pytest

from fapo.records import Example

TENANT = Path(__file__).resolve().parent.parent / "tenants" / "cve-cwe"
SPLITS = ("train", "val", "test")
GENERATED = ("data/train.jsonl", "data/val.jsonl", "data/test.jsonl", "catalog/cwe.jsonl")


def _module(name: str) -> types.ModuleType:
    """Import a tenant file by path (the folder name is not a Python identifier)."""
    spec = importlib.util.spec_from_file_location(f"cve_cwe_{name}", TENANT / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(split: str) -> list[dict[str, Any]]:
    lines = (TENANT / "data" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _catalog() -> list[dict[str, Any]]:
    lines = (TENANT / "catalog" / "cwe.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# --- the committed data ------------------------------------------------------------------------


def test_no_input_mentions_a_cwe_id() -> None:
    for split in SPLITS:
        for row in _rows(split):
            text = json.dumps(row["inputs"])
            assert not re.search(r"CWE", text, re.IGNORECASE), (split, row["id"], text)


def test_splits_are_disjoint_by_cve_and_by_description() -> None:
    seen_ids: dict[str, str] = {}
    seen_text: dict[str, str] = {}
    for split in SPLITS:
        rows = _rows(split)
        assert len(rows) > 200, f"{split} is suspiciously small"
        for row in rows:
            assert seen_ids.setdefault(row["id"], split) == split, f"{row['id']} in two splits"
            text = row["inputs"]["description"].casefold()
            assert seen_text.setdefault(text, split) == split, f"{row['id']}: text in two splits"
    assert len(seen_ids) > 900


def test_every_label_is_a_catalog_weakness_and_rows_are_well_formed() -> None:
    catalog = _catalog()
    ids = [c["id"] for c in catalog]
    assert len(ids) == len(set(ids)) == 130
    assert all(
        c["name"] and c["description"] and re.fullmatch(r"CWE-\d+", c["id"]) for c in catalog
    )
    multi = 0
    for split in SPLITS:
        for row in _rows(split):
            assert set(row) == {"id", "inputs", "label"}
            assert re.fullmatch(r"CVE-\d{4}-\d{4,}", row["id"])
            assert set(row["inputs"]) == {"description"} and row["inputs"]["description"].strip()
            assert row["label"] and set(row["label"]) <= set(ids), row
            assert row["label"] == sorted(set(row["label"]), key=lambda c: int(c[4:]))
            multi += len(row["label"]) > 1
    assert multi > 50, "CVEs listed under several weaknesses should be merged into one row"


def test_licence_and_copyright_designation_sit_beside_the_data() -> None:
    assert "MITRE hereby grants you" in (TENANT / "LICENSE").read_text(encoding="utf-8")
    notice = (TENANT / "NOTICE").read_text(encoding="utf-8")
    assert "Copyright ©" in notice and "The MITRE Corporation" in notice and "4.14" in notice


# --- the preparation script --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Chain: improper input validation (CWE-20) in firewall leads to XSS (CWE-79), as exploited.",
            "Chain: improper input validation in firewall leads to XSS, as exploited.",
        ),
        (
            "compares the Host header (CWE-178, CWE-1289), allowing bypass",
            "compares the Host header, allowing bypass",
        ),
        (
            "Buffer underflow (length parameter inconsistency, CWE-130)",
            "Buffer underflow (length parameter inconsistency)",
        ),
        ("math [CWE-1339] to exit the loop [CWE-835]", "math to exit the loop"),
        (
            "Overlaps unchecked error. This is not quite CWE-412, but close.",
            "Overlaps unchecked error.",
        ),
        ("Bypass via goto. CWE-705 (Scoping) -> cwe 561 (Dead Code)", "Bypass via goto."),
        ("writes during the window [REF-1237].", "writes during the window."),
        ("  spaced\n\tout  text ", "spaced out text"),
    ],
)
def test_scrub_removes_every_leaking_mention(raw: str, expected: str) -> None:
    assert _module("prepare").scrub(raw) == expected


def test_split_assignment_depends_only_on_the_id() -> None:
    prepare = _module("prepare")
    ids = [f"CVE-2020-{n:05d}" for n in range(2000)]
    first = [prepare.split_of(i) for i in ids]
    assert first == [prepare.split_of(i) for i in reversed(ids)][::-1]
    share = {s: first.count(s) / len(ids) for s in SPLITS}
    assert 0.35 < share["train"] < 0.45 and 0.25 < share["val"] < 0.35, share


def test_prepare_regenerates_byte_identical_files(tmp_path: Path) -> None:
    pytest.importorskip("cwe2")
    prepare = _module("prepare")
    assert prepare.main(["--out", str(tmp_path)]) == 0
    for rel in (*GENERATED, "LICENSE", "NOTICE"):
        assert (tmp_path / rel).read_bytes() == (TENANT / rel).read_bytes(), rel


# --- scorer and chain ----------------------------------------------------------------------------


def test_scorer_accepts_any_listed_weakness_exactly() -> None:
    score = _module("scorer").score
    ex = Example("CVE-2020-3580", {"description": "x"}, ["CWE-20", "CWE-79"])
    assert score(ex, "CWE-79").value == 1.0
    assert score(ex, " CWE-20 ").value == 1.0
    assert score(ex, "CWE-787").value == 0.0
    assert score(ex, "cwe-79 is my answer").value == 0.0
    assert score(ex, None).value == 0.0
    assert score(ex, "CWE-79").details == {
        "predicted": "CWE-79",
        "acceptable": ["CWE-20", "CWE-79"],
    }


def test_normalize_turns_answers_into_cwe_ids() -> None:
    normalize = _module("chain").normalize_cwe
    cands = [{"id": "CWE-79", "name": "Cross-site Scripting"}, {"id": "CWE-20", "name": "Input"}]
    assert normalize("cwe 79", cands) == "CWE-79"
    assert normalize("The answer is CWE-020 because ...", cands) == "CWE-20"
    assert normalize("79", cands) == "CWE-79"
    assert normalize("I pick cross-site scripting", cands) == "CWE-79"
    assert normalize("no idea", cands) == ""
    assert normalize("", cands) == ""


class _FirstCandidate:
    """A deterministic stand-in task model: answers the first listed candidate, and records prompts."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.settings: dict[str, Any] = {}

    def __call__(self, role: str = "task", **settings: Any) -> _FirstCandidate:
        self.settings = settings
        return self

    async def ainvoke(self, prompt: str) -> Any:
        from langchain_core.messages import AIMessage

        self.prompts.append(prompt)
        listed = re.findall(r"^- (CWE-\d+): ", prompt, re.MULTILINE)
        return AIMessage(content=f"Answer: {listed[0]}" if listed else "none")


def _run(tenant: Any, model: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    graph, _ = tenant.build(model)
    app = graph.compile()

    async def go() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(app.ainvoke(dict(r["inputs"])) for r in rows)))

    return asyncio.run(go())


def test_chain_lists_k_candidates_and_shows_the_model_only_the_description() -> None:
    from fapo.tenant import load_tenant

    base = load_tenant(TENANT)
    rows = _rows("val")[:40]
    for k in (1, 7):
        params = base.files["params.yaml"].replace("k: 5", f"k: {k}")
        model = _FirstCandidate()
        states = _run(base.variant({"params.yaml": params}), model, rows)
        assert all(len(s["candidates"]) == k for s in states)
        assert all(s["cwe"] == s["candidates"][0] for s in states)
        assert model.settings == {"temperature": 0.0, "max_tokens": 64}
        assert len(model.prompts) == len(rows)
        assert not any(r["id"] in p for r in rows for p in model.prompts)
        assert all(any(r["inputs"]["description"] in p for p in model.prompts) for r in rows)


def test_alternate_terms_change_retrieval() -> None:
    from fapo.tenant import load_tenant

    base = load_tenant(TENANT)
    params = base.files["params.yaml"].replace("alternate_terms: false", "alternate_terms: true")
    row = {"inputs": {"description": "A blog plugin allows XSS via a crafted comment."}}
    plain = _run(base, _FirstCandidate(), [row])[0]["candidates"]
    terms = _run(base.variant({"params.yaml": params}), _FirstCandidate(), [row])[0]["candidates"]
    assert "CWE-79" in terms and "CWE-79" not in plain


def test_checks_separate_retrieval_misses_from_choice_errors_on_train() -> None:
    """Every wrong answer on train is blamed on exactly one step, and on the right one."""
    from fapo.tenant import load_tenant

    tenant = load_tenant(TENANT)
    by_step = {c.step: c for c in tenant.checks}
    assert set(by_step) == {"retrieve", "choose"}
    assert (by_step["retrieve"].level, by_step["choose"].level) == ("parameter", "prompt")
    rows = _rows("train")
    states = _run(tenant, _FirstCandidate(), rows)
    misses = choice_errors = correct = 0
    for row, state in zip(rows, states, strict=True):
        ex = Example(row["id"], row["inputs"], row["label"])
        retrieved = bool(set(row["label"]) & set(state["candidates"]))
        right = tenant.scorer(ex, state["cwe"]).value == 1.0
        after_retrieve = {k: state[k] for k in ("description", "candidates")}
        retrieve_failed = by_step["retrieve"].run(ex, after_retrieve) is not None
        choose_failed = by_step["choose"].run(ex, {**after_retrieve, "answer": state["answer"]})
        assert retrieve_failed == (not retrieved)
        if right:
            correct += 1
            assert not retrieve_failed and choose_failed is None
        elif retrieve_failed:
            misses += 1
        else:
            choice_errors += 1
            assert choose_failed is not None and choose_failed.level == "prompt"
    assert misses > 50 and choice_errors > 50 and correct > 50, (misses, choice_errors, correct)


# --- through the engine, offline, on the simulated model -----------------------------------------


def test_cli_validate_and_eval_val_pass_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from fapo.cli import app

    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()
    res = runner.invoke(app, ["validate", str(TENANT)])
    assert res.exit_code == 0, res.output
    assert "cve-cwe: valid" in res.output
    out = tmp_path / "eval"
    res = runner.invoke(
        app, ["eval", str(TENANT), "--split", "val", "--no-cache", "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["n"] == len(_rows("val")) and summary["errors"] == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == summary["n"]
    # The summary's mean is the scorer applied to the recorded predictions, nothing else.
    labels = {r["id"]: r["label"] for r in _rows("val")}
    hits = [rec["prediction"] in labels[rec["id"]] for rec in records]
    assert summary["mean"] == pytest.approx(sum(hits) / len(hits))
    assert 0.0 < summary["mean"] < 1.0
    assert all(
        [s["step"] for s in rec["steps"]] == ["retrieve", "choose", "normalize"] for rec in records
    )


def test_attribution_on_train_separates_retrieval_misses_from_choice_errors(tmp_path: Path) -> None:
    from fapo.attribute import attribute
    from fapo.evaluate import evaluate
    from fapo.tenant import load_tenant

    tenant = load_tenant(TENANT)
    evaluate(tenant, "train", out_dir=tmp_path, use_cache=False, concurrency=8)
    report = attribute(tenant, tmp_path / "results.jsonl", split="train")
    clusters = {(c["step"], c["level"]): set(c["example_ids"]) for c in report["clusters"]}
    assert set(clusters) == {("retrieve", "parameter"), ("choose", "prompt")}, report["clusters"]
    labels = {r["id"]: set(r["label"]) for r in _rows("train")}
    missed, wrong = set(), set()
    for line in (tmp_path / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["score"] == 1.0:
            continue
        cands = next(s["update"]["candidates"] for s in rec["steps"] if s["step"] == "retrieve")
        (wrong if labels[rec["id"]] & set(cands) else missed).add(rec["id"])
    assert clusters[("retrieve", "parameter")] == missed and len(missed) > 50
    assert clusters[("choose", "prompt")] == wrong and len(wrong) > 50


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_same_tenant_runs_on_a_real_provider_api_with_only_the_model_spec_changed(
    provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider SDKs talk to a loopback fake of their API; chain, prompt and params are as shipped."""
    import dataclasses
    import sys

    from fapo.evaluate import evaluate
    from fapo.tenant import load_tenant

    sys.path.insert(0, str(Path(__file__).parent))
    from fakeapi import FakeAPI

    for name in list(__import__("os").environ):
        if name.startswith(("ANTHROPIC_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    def answer(req: Any) -> str:
        listed = re.findall(r"^- (CWE-\d+): ", req.prompt, re.MULTILINE)
        return f"{listed[-1]}" if listed else "none"

    with FakeAPI(answer) as api:
        base = api.openai_base if provider == "openai" else api.url
        shipped = load_tenant(TENANT)
        tenant = dataclasses.replace(
            shipped,
            spec=shipped.spec.model_copy(update={"models": {"task": f"{provider}:fake@{base}"}}),
            settings=shipped.settings.model_copy(update={"rate_limits": {}}),
        )
        s = evaluate(tenant, "val", out_dir=tmp_path, use_cache=False, limit=12, concurrency=4)
        bodies = [r.body for r in api.requests]
    assert s.n == 12 and s.errors == 0 and s.calls == 12
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    for rec in records:
        cands = next(st["update"]["candidates"] for st in rec["steps"] if st["step"] == "retrieve")
        assert rec["prediction"] == cands[-1]
    # an OpenAI-compatible endpoint given by URL gets the field every such server honours
    # (llama.cpp ignores max_completion_tokens; docs/local-models.md)
    limit_key = "max_tokens"
    assert all(b.get("temperature") == 0.0 and b.get(limit_key) == 64 for b in bodies), bodies[0]

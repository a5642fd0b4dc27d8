"""`fapo init --template hotpotqa|hover|papillon --data PATH`: official formats -> tenants.

Fixtures: tests/fixtures/benchmarks/ (fictional rows in the release formats, written by its
generate.py). Each template must build a tenant that validates, evaluates and runs with the
built-in agent; bad files are one-line errors that leave nothing behind.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fapo.benchmarks import write_tenant_data
from fapo.errors import FapoError
from fapo.evaluate import evaluate
from fapo.loop import RunOptions
from fapo.loop import run as run_loop
from fapo.scaffold import BENCHMARK_TEMPLATES, create
from fapo.settings import load_settings
from fapo.tenant import load_tenant
from fapo.validate import validate

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "benchmarks"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "fapo.toml", tmp_path / "fapo.toml")
    return tmp_path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("template", BENCHMARK_TEMPLATES)
def test_fixture_builds_a_tenant_that_validates_evaluates_and_runs(
    project: Path, template: str
) -> None:
    settings = load_settings(project)
    dest = project / "tenants" / f"b-{template}"
    files = create(f"b-{template}", template, dest, FIXTURES / template)
    assert {"tenant.yaml", "data/train.jsonl", "data/val.jsonl", "data/test.jsonl"} <= set(files)
    tenant, problems, _ = validate(str(dest), settings)
    assert problems == [] and tenant.name == f"b-{template}"
    sizes = [len(_rows(dest / "data" / f"{s}.jsonl")) for s in ("train", "val", "test")]
    assert sizes == [6, 12, 12]  # 30 fixture rows: 20 % / 40 % / 40 %
    s = evaluate(load_tenant(dest, settings), "val", out_dir=project / "ev", use_cache=False)
    assert s.n == 12 and s.errors == 0 and 0.0 <= s.mean <= 1.0
    result = run_loop(dest, RunOptions(run_id="small", budget={"max_variants": 2}), settings)
    run_dir = project / "runs" / f"b-{template}" / "small"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert "v000" in result.val and (run_dir / "report.md").is_file()


def test_hotpotqa_reads_the_release_format(tmp_path: Path) -> None:
    counts = write_tenant_data("hotpotqa", FIXTURES / "hotpotqa", tmp_path)
    source = json.loads((FIXTURES / "hotpotqa" / "hotpot_fixture_v1.json").read_text())
    titles = {para[0] for ex in source for para in ex["context"]}
    assert counts == {"train": 6, "val": 12, "test": 12, "corpus": len(titles)}
    row = _rows(tmp_path / "data" / "val.jsonl")[0]
    ex = next(e for e in source if e["_id"] == row["id"])
    assert row["inputs"] == {"question": ex["question"]}
    assert row["label"] == {
        "answer": ex["answer"],
        "titles": [f[0] for f in ex["supporting_facts"]],
    }
    corpus = {d["title"]: d["text"] for d in _rows(tmp_path / "corpus" / "passages.jsonl")}
    para = next(p for p in ex["context"] if p[0] == row["label"]["titles"][0])
    assert corpus[para[0]] == " ".join(para[1])


def test_splits_are_seeded_and_disjoint(tmp_path: Path) -> None:
    write_tenant_data("hover", FIXTURES / "hover", tmp_path / "a")
    write_tenant_data("hover", FIXTURES / "hover", tmp_path / "b")
    ids = {}
    for split in ("train", "val", "test"):
        a = (tmp_path / "a" / "data" / f"{split}.jsonl").read_bytes()
        assert a == (tmp_path / "b" / "data" / f"{split}.jsonl").read_bytes()
        ids[split] = {r["id"] for r in _rows(tmp_path / "a" / "data" / f"{split}.jsonl")}
    assert sum(map(len, ids.values())) == len(set().union(*ids.values())) == 30


def test_papillon_scores_quality_and_leakage(project: Path) -> None:
    dest = project / "tenants" / "pp"
    create("pp", "papillon", dest, FIXTURES / "papillon")
    tenant = load_tenant(dest, load_settings(project))
    row = _rows(dest / "data" / "val.jsonl")[0]
    from fapo import Example

    ex = Example(row["id"], row["inputs"], row["label"])
    leaky = tenant.scorer(
        ex, {"response": row["label"]["target"], "request": row["inputs"]["query"]}
    )
    clean = tenant.scorer(ex, {"response": row["label"]["target"], "request": "Write a note."})
    assert clean.value == 1.0 and clean.details["leakage"] == 0.0
    assert leaky.details["leakage"] == 1.0 and leaky.value == 0.5


@pytest.mark.parametrize(
    ("template", "content", "message"),
    [
        ("hotpotqa", "{}", "expected a JSON list"),
        ("hotpotqa", '[{"_id": "x", "question": "q"}]', "missing 'answer'"),
        ("hotpotqa", "[1,", "not JSON"),
        (
            "hover",
            '[{"uid": "u", "claim": "c", "supporting_facts": [], "label": "MAYBE"}]',
            "MAYBE",
        ),
        ("hover", "[]", "corpus.jsonl: missing"),
        ("papillon", "user_query,target_response\nq,r\n", "no column 'pii_units'"),
    ],
)
def test_bad_files_are_one_line_errors_and_leave_nothing(
    tmp_path: Path, template: str, content: str, message: str
) -> None:
    data = tmp_path / "in" / ("bad.csv" if template == "papillon" else "bad.json")
    data.parent.mkdir()
    data.write_text(content)
    dest = tmp_path / "t"
    with pytest.raises(FapoError, match=message) as err:
        create("t", template, dest, data)
    assert "\n" not in str(err.value) and not dest.exists()


def test_missing_or_misplaced_data_option(tmp_path: Path) -> None:
    with pytest.raises(FapoError, match="needs --data PATH"):
        create("x", "hover", tmp_path / "x")
    with pytest.raises(FapoError, match="--data is for the templates"):
        create("x", "qa", tmp_path / "x", FIXTURES / "hover")
    with pytest.raises(FapoError, match="no such file or folder"):
        create("x", "hover", tmp_path / "x", tmp_path / "nowhere")


def test_init_command_with_data(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fapo.cli import app

    monkeypatch.chdir(project)
    res = CliRunner().invoke(
        app, ["init", "hq", "--template", "hotpotqa", "--data", str(FIXTURES / "hotpotqa")]
    )
    assert res.exit_code == 0, res.output
    assert (project / "tenants" / "hq" / "corpus" / "passages.jsonl").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "fapo.cli", "init", "hv", "--template", "hover"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "needs --data PATH" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (project / "tenants" / "hv").exists()


def test_large_file_is_capped_and_indexes_only_kept_examples(tmp_path: Path) -> None:
    rows = [
        {
            "_id": f"q{i}",
            "question": f"Where is thing {i}?",
            "answer": f"place {i}",
            "supporting_facts": [[f"Thing {i}", 0]],
            "context": [[f"Thing {i}", [f"Thing {i} is in place {i}."]]],
        }
        for i in range(1000)
    ]
    (tmp_path / "hotpot_big.json").write_text(json.dumps(rows))
    counts = write_tenant_data("hotpotqa", tmp_path / "hotpot_big.json", tmp_path / "t")
    assert counts == {"train": 150, "val": 300, "test": 300, "corpus": 750}
    kept = {
        r["label"]["titles"][0]
        for s in ("train", "val", "test")
        for r in _rows(tmp_path / "t" / "data" / f"{s}.jsonl")
    }
    corpus = {d["title"] for d in _rows(tmp_path / "t" / "corpus" / "passages.jsonl")}
    assert corpus == kept
    assert "_context" not in (tmp_path / "t" / "data" / "val.jsonl").read_text()

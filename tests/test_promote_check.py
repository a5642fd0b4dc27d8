"""promote / check / diff on a real offline run of demo-qa (simulated model, built-in agent).

The run happens once per module in a private project folder (its own fapo.toml, tenant copy,
runs and cache), so nothing here touches the repository's tenants or runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from fapo.artifacts import read_files, read_json
from fapo.errors import FapoError
from fapo.evaluate import evaluate
from fapo.gate import Baseline, compare, junit_xml
from fapo.loop import RunOptions
from fapo.loop import run as run_loop
from fapo.promote import promote
from fapo.settings import load_settings
from fapo.tenant import load_tenant

REPO = Path(__file__).resolve().parents[1]
FAPO = [sys.executable, "-m", "fapo"]


def make_project(tmp: Path, tenant: str = "demo-qa") -> Path:
    """A throwaway project root: fapo.toml plus a copy of one tenant."""
    shutil.copy(REPO / "fapo.toml", tmp / "fapo.toml")
    shutil.copytree(
        REPO / "tenants" / tenant,
        tmp / "tenants" / tenant,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp


def fapo(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*FAPO, *args], cwd=project, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("proj"))


@pytest.fixture(scope="module")
def run_dir(project: Path) -> Path:
    settings = load_settings(project)
    result = run_loop(project / "tenants" / "demo-qa", RunOptions(run_id="r1"), settings)
    assert result.accepted, "the demo run must accept at least one change for these tests"
    return result.run_dir


def _reset(run_dir: Path) -> None:
    """Put the tenant back to the run's baseline files (what it was when the run started)."""
    promote(run_dir, "v000", force=True, settings=load_settings(run_dir.parents[2]))


def test_promote_then_eval_reproduces_final_val(project: Path, run_dir: Path) -> None:
    info = read_json(run_dir / "run.json")
    best = info["best"]
    assert best != "v000"
    r = promote(run_dir, settings=load_settings(project))
    assert r.variant == best and r.written
    tenant = load_tenant(project / "tenants" / "demo-qa", load_settings(project))
    assert dict(tenant.files) == read_files(run_dir / "variants" / best / "files")
    s = evaluate(tenant, "val", out_dir=project / "reeval", use_cache=False)
    assert s.mean == pytest.approx(info["val"][best])
    recorded = read_json(run_dir / "variants" / best / "eval" / "val" / "summary.json")["scores"]
    assert s.scores == recorded  # the same examples pass, not just the same mean
    # Promoting again is a no-op, not a "tenant changed" refusal.
    again = promote(run_dir, settings=load_settings(project))
    assert not again.written and not again.deleted
    assert json.loads((run_dir / "promotions.json").read_text())[0]["variant"] == best
    _reset(run_dir)


def test_promote_refuses_when_tenant_changed_unless_forced(project: Path, run_dir: Path) -> None:
    readme = project / "tenants" / "demo-qa" / "NOTES.txt"
    readme.write_text("edited after the run started\n")
    try:
        with pytest.raises(
            FapoError, match=r"changed since run r1 started \(NOTES\.txt\).*--force"
        ):
            promote(run_dir, settings=load_settings(project))
        r = promote(run_dir, force=True, settings=load_settings(project))
        assert r.forced and r.written
        assert readme.is_file()  # a file the run never knew is left alone
    finally:
        readme.unlink()
        _reset(run_dir)
    tenant = load_tenant(project / "tenants" / "demo-qa", load_settings(project))
    assert dict(tenant.files) == read_files(run_dir / "variants" / "v000" / "files")


def test_check_passes_unchanged_and_fails_made_worse(project: Path, run_dir: Path) -> None:
    promote(run_dir, settings=load_settings(project))
    try:
        ok = fapo(project, "check", "demo-qa", "--json", "--junit", "ok.xml")
        assert ok.returncode == 0, ok.stderr
        verdict = json.loads(ok.stdout)
        assert verdict["ok"] and verdict["drop"] == pytest.approx(0.0)
        assert verdict["baseline_source"].startswith("run r1")
        assert ET.parse(project / "ok.xml").getroot().find(".//failure") is None

        # Make the pipeline worse on purpose: put back the baseline's verbose answer prompt.
        prompt = project / "tenants" / "demo-qa" / "prompts" / "answer.md"
        baseline_prompt = read_files(run_dir / "variants" / "v000" / "files")["prompts/answer.md"]
        assert prompt.read_text() != baseline_prompt
        prompt.write_text(baseline_prompt)
        # A pipeline nobody evaluated yet has no default baseline: say so (exit 2), not guess.
        none = fapo(project, "check", "demo-qa")
        assert none.returncode == 2 and "no recorded val evaluation" in none.stderr
        assert none.stderr.count("\n") == 1
        bad = fapo(
            project,
            "check",
            "demo-qa",
            "--against",
            "r1",
            "--max-drop",
            "0.05",
            "--junit",
            "bad.xml",
        )
        assert bad.returncode == 1, bad.stdout + bad.stderr
        line = bad.stdout.strip()
        assert line.startswith("FAIL demo-qa: val score") and "more than the allowed 0.050" in line
        assert "got worse" in line and "pipeline files differ" in line
        root = ET.parse(project / "bad.xml").getroot()
        failure = root.find(".//testcase/failure")
        assert failure is not None and "dropped" in failure.get("message", "")
        assert root.get("failures") == "1"
    finally:
        _reset(run_dir)


def test_check_right_after_run_compares_with_the_same_pipeline(
    project: Path, run_dir: Path
) -> None:
    """Nothing promoted: the tenant still has the baseline's files, so v000's evaluation is the
    baseline (not the run's best variant, which would look like a drop)."""
    info = read_json(run_dir / "run.json")
    assert info["best"] != "v000" and info["val"][info["best"]] > info["val"]["v000"]
    r = fapo(project, "check", "demo-qa", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    verdict = json.loads(r.stdout)
    assert verdict["baseline_source"] == "run r1 (v000, val)"
    assert verdict["drop"] == pytest.approx(0.0) and verdict["pipeline_changed"] is False


def test_check_against_saved_baseline_file(project: Path, run_dir: Path) -> None:
    r = fapo(
        project,
        "check",
        "demo-qa",
        "--against",
        "r1",
        "--max-drop",
        "1",
        "--save-baseline",
        "base.json",
    )
    assert r.returncode == 0, r.stderr  # the unpromoted baseline is worse, but max-drop 1 allows it
    assert "wrote baseline base.json (val score" in r.stdout
    assert "over 40 examples" in r.stdout
    saved = json.loads((project / "base.json").read_text())
    assert saved["split"] == "val" and len(saved["scores"]) == 40
    same = fapo(project, "check", "demo-qa", "--against", "base.json", "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["pipeline_changed"] is False
    missing = fapo(project, "check", "demo-qa", "--against", "nope.json")
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and "--against nope.json" in missing.stderr


def test_compare_is_paired_on_common_examples() -> None:
    base = Baseline(0.5, "val", "file b.json", {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0})
    v = compare("t", "val", {"a": 1.0, "b": 0.0}, 0, base, 0.0)  # e.g. --limit 2
    assert v.ok and v.baseline == pytest.approx(0.5) and v.score == pytest.approx(0.5)
    v = compare("t", "val", {"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0}, 2, base, 0.1, fingerprint="x")
    assert not v.ok and v.worse == ["a"] and v.drop == pytest.approx(0.25)
    assert "2 example(s) raised errors" in v.reason
    xml = junit_xml(v)
    assert 'failures="1"' in xml and "examples that lost score: a" in xml


def test_no_baseline_is_a_one_line_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    r = fapo(project, "check", "demo-qa", "--limit", "4")
    assert r.returncode == 2
    assert r.stderr.startswith("error: no recorded val evaluation of tenant 'demo-qa'")
    assert "--save-baseline" in r.stderr and r.stderr.count("\n") == 1
    # --save-baseline on a first check records this evaluation instead of failing
    first = fapo(project, "check", "demo-qa", "--limit", "4", "--save-baseline", "b.json")
    assert first.returncode == 0, first.stderr
    assert "no earlier evaluation" in first.stdout and "wrote baseline b.json" in first.stdout
    assert len(json.loads((project / "b.json").read_text())["scores"]) == 4


def test_diff_shows_change_and_decision(project: Path, run_dir: Path) -> None:
    from fapo.workspace import unified_diff

    info = read_json(run_dir / "run.json")
    assert len(info["accepted"]) > 1  # so baseline → final differs from the last step alone
    r = fapo(project, "diff", "r1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["variant"] == info["best"] and d["status"] == "accepted" and d["against"] == "v000"
    files = run_dir / "variants"
    whole = unified_diff(
        read_files(files / "v000" / "files"), read_files(files / info["best"] / "files")
    )
    assert d["diff"] == whole  # what `fapo promote` would write onto the unchanged tenant
    text = fapo(project, "diff", "r1").stdout
    assert text.startswith(f"# baseline v000 → final {info['best']}")
    own = json.loads(fapo(project, "diff", "r1", info["best"], "--json").stdout)
    assert own["diff"] == (files / info["best"] / "diff.patch").read_text()  # its own change
    assert own["against"] == info["accepted"][-2]
    first = info["accepted"][0]
    r = fapo(project, "diff", "r1", first, "--against", "v000")
    assert r.returncode == 0
    assert r.stdout.startswith(f"# {first} (") and "against v000: accepted" in r.stdout
    assert "+++ b/" in r.stdout


def test_brief_context_is_kept_in_the_run_folder(run_dir: Path) -> None:
    briefs = [
        b
        for b in sorted(run_dir.glob("variants/v*/proposal/brief.md"))
        if "context/traces.json" in b.read_text()
    ]
    assert briefs  # the built-in agent's briefs name the traces of their cluster
    val = run_dir.parents[2] / "tenants" / "demo-qa" / "data" / "val.jsonl"
    val_ids = {json.loads(x)["id"] for x in val.read_text().splitlines() if x.strip()}
    for brief in briefs:
        traces = json.loads((brief.parent / "context" / "traces.json").read_text())
        assert traces and all("label" in t for t in traces)
        assert not {t["id"] for t in traces} & val_ids  # train traces only

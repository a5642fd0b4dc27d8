"""report.html of a real offline demo run: self-contained, and showing the run's own numbers.

The browser test opens it in headless Chromium (Debian's package; no browser download), reads the
DOM after layout and saves a screenshot under test-artifacts/.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fapo.artifacts import read_json
from fapo.loop import RunOptions
from fapo.loop import run as run_loop
from fapo.report_html import per_example, spend_by_stage, write_html
from fapo.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("proj")
    shutil.copy(REPO / "fapo.toml", project / "fapo.toml")
    shutil.copytree(
        REPO / "tenants" / "demo-qa",
        project / "tenants" / "demo-qa",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    result = run_loop(
        project / "tenants" / "demo-qa", RunOptions(run_id="html"), load_settings(project)
    )
    write_html(result.run_dir)
    return result.run_dir


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each table row."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, str] = {}
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "tr" and "data-variant" in a:
            self._row = a["data-variant"]
            self.rows[self._row] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row:
            self.rows[self._row] += data + " "


def parse(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    return p


def expected_points(run_dir: Path) -> dict[str, tuple[str, float | None]]:
    """variant -> (status, val) straight from the run's decision and summary files."""
    out = {}
    for vdir in sorted((run_dir / "variants").glob("v*")):
        if vdir.name == "v000":
            out["v000"] = ("baseline", read_json(vdir / "eval/val/summary.json")["mean"])
            continue
        d = read_json(vdir / "decision.json")
        out[vdir.name] = (d["status"], d.get("candidate_val"))
    return out


def check_dom(html: str, run_dir: Path) -> Elements:
    """The trajectory chart and the variant table carry exactly the run's numbers."""
    dom = parse(html)
    points = {a["data-variant"]: a for t, a in dom.tags if t == "g" and "data-variant" in a}
    expected = expected_points(run_dir)
    assert set(points) == set(expected)
    for vid, (status, val) in expected.items():
        assert points[vid]["data-status"] == status
        if val is None:
            assert "data-val" not in points[vid]
        else:
            assert float(points[vid]["data-val"]) == pytest.approx(val, abs=5e-4)
            assert f"{val:.3f}" in dom.rows[vid]
        assert status in dom.rows[vid]
    info = read_json(run_dir / "run.json")
    for vid in info["accepted"]:
        stats = read_json(run_dir / "variants" / vid / "decision.json")["stats"]
        assert "★ accepted" in dom.rows[vid]
        assert f"{stats['mean_diff']:.3f}" in dom.rows[vid]
        assert f"{stats['p_value']:.4f}" in dom.rows[vid]
    return dom


def test_html_is_self_contained_and_has_the_runs_numbers(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text()
    assert not re.search(r"https?:|//[a-z]|<link|\bsrc=|@import|url\(", html, re.I)
    check_dom(html, run_dir)
    info = read_json(run_dir / "run.json")
    best = info["best"]
    gap = info["val"][best] - info["test"][best]
    assert f"<b>{gap:+.3f}</b>" in html
    assert "the offline simulated model, not an LLM" in html
    assert (run_dir / "report.md").is_file() and (run_dir / "report.json").is_file()


def test_spend_by_stage_adds_up_to_the_run_total(run_dir: Path) -> None:
    spent = read_json(run_dir / "run.json")["spent"]
    rows = spend_by_stage(run_dir / "events.jsonl")
    assert sum(r["calls"] for r in rows) == spent["calls"]
    assert sum(r["cache_hits"] for r in rows) == spent["cache_hits"]
    assert sum(r["tokens"] for r in rows) == spent["input_tokens"] + spent["output_tokens"]
    assert {r["stage"] for r in rows} >= {
        "evaluation (train)",
        "evaluation (val)",
        "evaluation (test)",
        "proposal (agent)",
    }


def test_pipeline_cost_counts_every_model_call(run_dir: Path) -> None:
    info = read_json(run_dir / "run.json")
    base = per_example(run_dir / "variants/v000/eval/val/results.jsonl")
    final = per_example(run_dir / f"variants/{info['best']}/eval/val/results.jsonl")
    assert base is not None and final is not None
    assert base["calls"] == pytest.approx(1.0)  # demo-qa's baseline has one model step
    assert base["tokens"] > 0  # counted even when the calls came from the cache
    structure = (run_dir / f"variants/{info['best']}/files/structure.yaml").is_file()
    if structure:  # a retrieval hop adds a model call per example: the report must show it
        assert final["calls"] > base["calls"]


def test_report_command_writes_both_files(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fapo.cli import app

    (run_dir / "report.html").unlink()
    monkeypatch.chdir(run_dir.parents[2])
    res = CliRunner().invoke(app, ["report", "html", "--html", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert Path(out["html"]).is_file() and Path(out["markdown"]).is_file()


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={user_dir}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    url = (run_dir / "report.html").resolve().as_uri()
    dom = _chromium("--dump-dom", url, user_dir=tmp_path / "profile")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-ready="1"' in html  # the inline script ran: the page finished loading
    parsed = check_dom(html, run_dir)
    charts: dict[str, dict[str, Any]] = {a.get("id", ""): a for t, a in parsed.tags if t == "svg"}
    w, h = (int(x) for x in charts["trajectory"]["data-rendered"].split("x"))
    assert w > 300 and h > 150  # laid out by the browser, not just present in the markup
    assert "step-failures" in charts and "cost-bars" in charts
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-demo-qa.png"
    shot.unlink(missing_ok=True)
    res = _chromium(
        "--window-size=1280,2600", f"--screenshot={shot}", url, user_dir=tmp_path / "profile2"
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert _png_size(shot) == (1280, 2600)
    assert shot.stat().st_size > 30_000  # a rendered page, not a blank canvas


def _md_row(md: str, label: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_and_html_agree_on_pipeline_cost_with_cached_calls(
    run_dir: Path, tmp_path: Path
) -> None:
    """A warm cache serves the baseline's calls: both reports still count their tokens."""
    from fapo.report import COST_ROWS, write_report

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    val = copy / "variants" / "v000" / "eval" / "val"
    summary = read_json(val / "summary.json")
    summary.update(
        calls=0,
        cache_hits=summary["calls"] + summary["cache_hits"],
        input_tokens=0,
        output_tokens=0,
    )
    (val / "summary.json").write_text(json.dumps(summary))
    rows = [json.loads(x) for x in (val / "results.jsonl").read_text().splitlines() if x.strip()]
    for rec in rows:
        for step in rec["steps"]:
            for call in step["calls"]:
                call["cache_hit"] = True
    (val / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = write_report(copy).read_text()
    html = write_html(copy).read_text()
    base = per_example(val / "results.jsonl")
    best = read_json(copy / "run.json")["best"]
    final = per_example(copy / "variants" / best / "eval" / "val" / "results.jsonl")
    assert base is not None and final is not None and base["tokens"] > 0
    doc = parse(html)
    cost = [t for t, a in doc.tags if t == "table" and a.get("id") == "cost-table"]
    assert cost
    for key, label, nd in COST_ROWS:
        cells = _md_row(md, label)
        assert cells[1] == f"{base[key]:.{nd}f}" and cells[2] == f"{final[key]:.{nd}f}"
        row = re.search(
            rf"<tr ><td>{re.escape(label)}</td><td class=num>([^<]+)</td><td class=num>([^<]+)</td>"
            r"<td class=num>([^<]+)",
            html,
        )
        assert row is not None, label
        assert [g.strip() for g in row.groups()] == cells[1:4]  # same numbers and ratio


def test_markdown_trajectory_cuts_at_a_word_with_an_ellipsis() -> None:
    from fapo.report import clip, render_markdown

    assert clip("short", 70) == "short"
    long = "Answer with only the final answer " * 4
    cut = clip(long, 40)
    assert cut.endswith("…") and len(cut) <= 40 and long.startswith(cut[:-1])
    assert long[len(cut) - 1] == " "  # ends at a word boundary
    data = {
        "info": {
            "run_id": "r",
            "tenant": "t",
            "spec": {"models": {"task": "sim:default"}},
            "best": "v000",
        },
        "variants": [
            {
                "id": "v000",
                "proposal": None,
                "review": None,
                "decision": None,
                "evals": {},
                "attribution": None,
            },
            {
                "id": "v001",
                "proposal": {"level": "prompt", "rationale": long + " | pipe"},
                "review": {"blocked": False},
                "decision": {"status": "rejected", "reason": "no gain"},
                "evals": {},
                "attribution": None,
            },
        ],
        "levels": [],
        "events": 0,
    }
    row = next(x for x in render_markdown(data).splitlines() if x.startswith("| v001 |"))
    assert "…" in row and row.count("|") == 9

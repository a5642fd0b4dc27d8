"""A resumed run keeps the options it was started with (kill -9, then `--resume` with no flags),
a flag that contradicts them is a one-line error, and two runs of one tenant started together
both finish with the results a lone run gets (shared call cache, distinct run folders)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from run_outcome import run_outcome

REPO = Path(__file__).resolve().parents[1]
FIXES = REPO / "tenants" / "demo-qa" / "fixes"


def _project(tmp: Path, name: str) -> Path:
    root = tmp / name
    (root / "tenants").mkdir(parents=True)
    shutil.copytree(
        REPO / "tenants" / "demo-qa",
        root / "tenants" / "demo-qa",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "fapo.toml").write_text('[paths]\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n')
    # Two scripted proposals: the documented prompt fix, then the parameter fix.
    script = {
        "proposals": [
            {"files": {"prompts/answer.md": (FIXES / "prompts/answer.md").read_text()}},
            {"files": {"params.yaml": (FIXES / "params.yaml").read_text()}},
            {"files": {"params.yaml": (FIXES / "params.yaml").read_text() + "\n"}},
        ]
    }
    (root / "script.json").write_text(json.dumps(script))
    return root


def _env() -> dict[str, str]:
    """At call time, not import time: the test's private $TMPDIR (conftest) must reach the run,
    else other processes writing the shared /tmp are "outside writes" that block its proposals."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


#: Every run option, each away from its default.
FLAGS = [
    "--agent",
    "scripted:script.json",
    "--budget-variants",
    "2",
    "--budget-calls",
    "90000",
    "--budget-tokens",
    "9000000",
    "--budget-usd",
    "7.5",
    "--budget-minutes",
    "45",
    "--seed",
    "7",
    "--concurrency",
    "3",
    "--no-cache",
    "--agent-model",
    "some-model",
    "--agent-max-turns",
    "4",
    "--agent-timeout",
    "123",
]


def _fapo(root: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fapo", *args],
        cwd=root,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        **kw,
    )


def test_every_run_option_survives_kill9_and_resume(tmp_path: Path) -> None:
    ref = _project(tmp_path, "ref")
    done = _fapo(ref, "run", "demo-qa", "--json", "--run-id", "r", *FLAGS)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = run_outcome(ref / "runs/demo-qa/r")
    assert len(expected["decisions"]) == 2  # the variant budget, not the 3-step script
    # A p-value that moves with the seed: the resumed run must reproduce it.
    assert any(d.get("stats") for d in expected["decisions"].values())

    root = _project(tmp_path, "killed")
    run = root / "runs/demo-qa/r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fapo", "run", "demo-qa", "--json", "--run-id", "r", *FLAGS],
        cwd=root,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        end = time.monotonic() + 300
        # Killed after the first proposal is recorded, before the run ends.
        while time.monotonic() < end and proc.poll() is None:
            ev = run / "events.jsonl"
            if ev.is_file() and '"kind": "proposal"' in ev.read_text():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # A flag that contradicts the run's options is one line naming it; nothing changes.
    for flags, named in (
        (["--seed", "8"], "--seed 8 conflicts with run 'r', started with --seed 7"),
        (["--agent", "builtin"], "--agent builtin conflicts"),
        (["--budget-variants", "1"], "--budget-variants 1 conflicts"),  # lower: raise only
        (["--concurrency", "4"], "--concurrency 4 conflicts"),
        (["--agent-model", "other"], "--agent-model other conflicts"),
    ):
        bad = _fapo(root, "run", "demo-qa", "--json", "--resume", "r", *flags)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
        assert named in bad.stderr and "Traceback" not in bad.stderr
    # The same value as the run's is not a conflict; no flag at all restores everything.
    done = _fapo(root, "run", "demo-qa", "--json", "--resume", "r", "--seed", "7")
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_outcome(run) == expected  # agent script, budget and seed as started
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"
    assert info["resumes"][-1]["options"] == info["options"]
    assert info["options"]["agent"] == f"scripted:{root / 'script.json'}"
    assert info["options"]["concurrency"] == 3 and info["options"]["use_cache"] is False
    assert info["options"]["agent_settings"] == {
        "model": "some-model",
        "max_turns": 4,
        "timeout_s": 123.0,
    }
    assert info["options"]["budget"] == {
        "max_variants": 2,
        "max_calls": 90000,
        "max_tokens": 9000000,
        "max_usd": 7.5,
        "max_minutes": 45.0,
    }
    assert info["budget"]["max_variants"] == 2 and info["budget"]["max_minutes"] == 45.0
    assert not (root / ".fapo" / "cache.sqlite").exists()  # --no-cache held after resume


def test_two_runs_of_one_tenant_started_together_both_finish(tmp_path: Path) -> None:
    args = ["run", "demo-qa", "--json", "--budget-variants", "1", "--agent", "builtin"]
    ref = _project(tmp_path, "ref")
    lone = _fapo(ref, *args, "--no-cache")
    assert lone.returncode == 0, lone.stderr[-2000:]
    expected = run_outcome(Path(json.loads(lone.stdout)["run_dir"]))

    root = _project(tmp_path, "shared")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "fapo", *args],
            cwd=root,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    dirs = [Path(json.loads(out)["run_dir"]) for out, _ in outs]
    assert dirs[0] != dirs[1]
    for d in dirs:
        assert run_outcome(d) == expected
        assert json.loads((d / "run.json").read_text())["status"] == "finished"
    # Both wrote into the one shared cache and it is whole.
    import sqlite3

    db = sqlite3.connect(root / ".fapo" / "cache.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] > 0

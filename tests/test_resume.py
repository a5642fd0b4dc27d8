"""kill -9 at random moments, then `--resume`: same decisions as an uninterrupted run, and no
finished evaluation or proposal is redone."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_outcome import run_outcome

REPO = Path(__file__).resolve().parents[1]


def _project(tmp: Path, name: str) -> Path:
    import shutil

    root = tmp / name
    (root / "tenants").mkdir(parents=True)
    shutil.copytree(
        REPO / "tenants" / "demo-qa",
        root / "tenants" / "demo-qa",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "fapo.toml").write_text('[paths]\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n')
    return root


def _cmd(resume: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fapo",
        "run",
        "demo-qa",
        "--json",
        *(["--resume", "r"] if resume else ["--run-id", "r"]),
    ]


def _outcome(root: Path) -> dict:
    return run_outcome(root / "runs" / "demo-qa" / "r")


@pytest.mark.parametrize("seed", [1, 2])
def test_kill9_then_resume_reaches_the_same_decisions(tmp_path: Path, seed: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ref = _project(tmp_path, "ref")
    t0 = time.monotonic()
    subprocess.run(_cmd(False), cwd=ref, env=env, check=True, capture_output=True, timeout=300)
    duration = time.monotonic() - t0
    expected = _outcome(ref)
    assert len(expected["decisions"]) >= 3

    root = _project(tmp_path, "killed")
    rng = random.Random(seed)
    kills = 0
    for _ in range(4):
        started = (root / "runs/demo-qa/r/run.json").is_file()
        proc = subprocess.Popen(
            _cmd(started),
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # Random moments inside the run (scaled to how long an uninterrupted run takes here).
        time.sleep(rng.uniform(0.15, 0.6) * duration)
        if proc.poll() is not None:
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= 1, "the run finished before any kill; lengthen the run or shorten delays"
    events_before = (root / "runs/demo-qa/r/events.jsonl").read_text().splitlines()
    done = subprocess.run(
        _cmd(True), cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert _outcome(root) == expected
    # Nothing finished before the last resume was redone: every earlier event is still there
    # once, and no stage key appears twice in the log.
    events = [
        json.loads(x) for x in (root / "runs/demo-qa/r/events.jsonl").read_text().splitlines()
    ]
    keys = [(e["kind"], e["key"]) for e in events]
    assert len(keys) == len(set(keys))
    assert [json.loads(x) for x in events_before if x.strip()] == events[
        : len(events_before)
    ] or len(events_before) == 0

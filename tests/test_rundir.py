"""Run folders: safe unique ids, one process per folder (the second is told who holds it),
`failed`/`interrupted` status, workspaces inside the run folder, readable artifact modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fapo.cli import main
from fapo.rundir import RUN_ID_RE, check_run_id, new_run_id, shown_status

REPO = Path(__file__).resolve().parents[1]


def _project(tmp: Path) -> Path:
    root = tmp / "proj"
    (root / "tenants").mkdir(parents=True)
    shutil.copytree(
        REPO / "tenants" / "demo-qa",
        root / "tenants" / "demo-qa",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "fapo.toml").write_text('[paths]\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n')
    return root


def _cli(args: list[str], cwd: Path, capsys) -> tuple[int, str, str]:
    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = ["fapo", *args]
    os.chdir(cwd)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def fapo(args: list[str], cwd: Path, capsys) -> tuple[int, str]:
    code, _, err = _cli(args, cwd, capsys)
    return code, err


def _stdout(args: list[str], cwd: Path, capsys) -> tuple[int, str]:
    code, out, _ = _cli(args, cwd, capsys)
    return code, out


def _wait_for(cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_ids_are_unique_and_safe() -> None:
    ids = {new_run_id() for _ in range(500)}  # the same second, mostly
    assert len(ids) == 500 and all(RUN_ID_RE.fullmatch(i) for i in ids)
    for bad in ("../x", "a/b", "", ".hidden", "a b", "x" * 81, "a..b", "r\n"):
        with pytest.raises(Exception, match="not allowed"):
            check_run_id(bad)
    for good in ("r", "2026-01-02_run.3", "A" * 80):
        assert check_run_id(good) == good


def test_lock_kill_interrupted_resume_scratch_and_modes(tmp_path: Path, capsys) -> None:
    """One run, observed throughout: its workspaces sit in the run folder (none in TMP, even when
    killed inside one), a second process on the folder fails naming the holder, kill -9 leaves
    it `interrupted (resumable)`, the resume finishes it and removes the scratch folder, and
    every file is 0644 / folder 0755 under umask 022."""
    root = _project(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp)}
    run_dir = root / "runs" / "demo-qa" / "r"
    cmd = [sys.executable, "-m", "fapo", "run", "demo-qa", "--json", "--budget-variants", "1"]
    proc = subprocess.Popen(
        [*cmd, "--run-id", "r"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=lambda: os.umask(0o022),
    )
    try:
        _wait_for(lambda: (run_dir / "run.json").is_file(), 120, "run.json")
        # A second process on the same folder: one line naming the holder's pid.
        code, err = fapo(["run", "demo-qa", "--json", "--resume", "r"], root, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"in use by pid {proc.pid} on " in err and "Traceback" not in err
        code, out = _stdout(["status", "r"], root, capsys)
        assert out.startswith("demo-qa / r: running")
        # Kill it while the agent's workspace exists.
        _wait_for(
            lambda: any((run_dir / ".scratch").glob("fapo-ws-*")), 240, "a proposal workspace"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("fapo-")]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "running" and shown_status(run_dir, info) == "interrupted (resumable)"
    code, out = _stdout(["status", "r"], root, capsys)
    assert out.startswith("demo-qa / r: interrupted (resumable)"), out
    done = subprocess.run(
        [sys.executable, "-m", "fapo", "run", "demo-qa", "--json", "--resume", "r"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert not (run_dir / ".scratch").exists()
    assert not [p.name for p in tmp.iterdir() if p.name.startswith("fapo-")]
    # Issue 18.9: modes as umask 022 makes them, for every file of the run folder.
    wrong = [
        f"{p.relative_to(run_dir)} {stat.S_IMODE(p.stat().st_mode):o}"
        for p in run_dir.rglob("*")
        if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)
    ]
    files = sum(1 for p in run_dir.rglob("*") if p.is_file())
    assert files > 20 and not wrong, wrong


def _fake_run(root: Path, run_id: str, **info) -> Path:
    d = root / "runs" / "demo-qa" / run_id
    d.mkdir(parents=True)
    base = {"run_id": run_id, "tenant": "demo-qa", "started": time.time(), "status": "running"}
    (d / "run.json").write_text(json.dumps({**base, **info}))
    return d


def test_status_text_and_tenant_listing(tmp_path: Path, capsys) -> None:
    """Issue 18.8: best variant and spend in the text, no `val None` for an invalid variant,
    `fapo status TENANT` lists that tenant's runs with their status."""
    root = _project(tmp_path)
    spent = {"variants": 2, "calls": 120, "input_tokens": 900, "output_tokens": 100, "usd": 0.25}
    d = _fake_run(
        root,
        "done",
        status="finished",
        stop_reason="variant budget reached",
        best="v001",
        val={"v000": 0.5, "v001": 0.75},
        spent=spent,
    )
    for vid, val in (("v000", 0.5), ("v001", 0.75)):
        (d / "variants" / vid / "eval" / "val").mkdir(parents=True)
        (d / "variants" / vid / "eval" / "val" / "summary.json").write_text(
            json.dumps({"mean": val, "n": 4, "scores": {}})
        )
    (d / "variants" / "v002").mkdir()
    (d / "variants" / "v002" / "decision.json").write_text(
        json.dumps({"variant": "v002", "status": "invalid", "reason": "blocked by review: x"})
    )
    _fake_run(root, "dead")  # `running`, nobody holds the lock
    _fake_run(root, "broke", status="failed", stop_reason="chain.py:3: syntax error")
    code, out = _stdout(["status", "done"], root, capsys)
    assert code == 0, out
    assert "best: v001 (val 0.750)" in out
    assert "spent: 2 candidates · 120 calls · 1000 tokens · $0.250" in out
    assert "None" not in out and "v002" in out and "invalid" in out
    code, out = _stdout(["status", "demo-qa"], root, capsys)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "demo-qa: 3 runs"
    assert any(ln.split()[:2] == ["done", "finished"] for ln in lines)
    assert any("dead  interrupted (resumable)" in ln for ln in lines)
    assert any("broke  failed" in ln and "syntax error" in ln for ln in lines)
    code, out = _stdout(["status", "demo-qa", "--json"], root, capsys)
    runs = {r["run_id"]: r for r in json.loads(out)["runs"]}
    assert runs["dead"]["status"] == "interrupted (resumable)" and runs["done"]["best"] == "v001"

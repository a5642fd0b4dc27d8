"""Run an agent CLI as a contained subprocess: own process group, closed stdin, hard timeout.

Agent CLIs are untrusted: they run model-chosen tools. So every run gets its own process group
(killed whole on timeout, so tool subprocesses die too), a closed stdin (an open one makes Codex
wait forever) and a transcript with every known secret redacted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fapo.agents.agent_env import redact, secret_values


def find_binary(name: str, project_root: Path, env: Mapping[str, str] | None = None) -> str | None:
    """`<project_root>/node_modules/.bin/<name>` first (pinned install), then PATH."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    local = project_root / "node_modules" / ".bin" / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    path = (env or os.environ).get("PATH", os.defpath)
    return shutil.which(name, path=path)


@dataclass
class RunResult:
    """What happened to one process, with secrets already redacted."""

    command: list[str]
    exit_code: int | None
    timed_out: bool
    stopped: str | None  # why the watcher stopped it early (e.g. max turns), else None
    duration_s: float
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""


def _descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (by /proc), so children that left the group die too."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process group, then SIGKILL the group and every descendant."""
    victims = _descendants(proc.pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
            victims += _descendants(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def run_cli(
    argv: list[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    transcript: Path | None = None,
    secrets: Iterable[str] = (),
    watch: Callable[[dict[str, Any]], str | None] | None = None,
    grace_s: float = 1.0,
    on_stderr: Callable[[str], bool] | None = None,
) -> RunResult:
    """Run `argv` with stdin closed and a hard wall-clock timeout over its whole process group.

    stdout is read as JSON lines (non-JSON lines are kept as `{"type": "_raw"}` events) and
    appended, redacted, to `transcript` as they arrive. `watch` sees each event and may return a
    reason to stop the process early (e.g. too many turns). `on_stderr` sees each stderr line
    and returns True when it consumed it (not kept: Codex's per-request usage lines would
    otherwise crowd its denials out of the 200 KB kept).
    """
    secrets = [*secrets, *secret_values(env)]
    command = [redact(a, secrets) for a in argv]
    events: list[dict[str, Any]] = []
    stderr_chunks: list[bytes] = []
    stop_reason: list[str] = []
    out = transcript.open("a", encoding="utf-8") if transcript else None
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    stop_event = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = redact(raw.decode("utf-8", errors="replace").rstrip("\n"), secrets)
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    event = {"type": "_raw", "value": event}
            except json.JSONDecodeError:
                event = {"type": "_raw", "text": line}
            events.append(event)
            if out:
                out.write(json.dumps(event, ensure_ascii=False) + "\n")
                out.flush()
            if watch and not stop_reason:
                reason = watch(event)
                if reason:
                    stop_reason.append(reason)
                    stop_event.set()

    def read_stderr() -> None:
        assert proc.stderr is not None
        kept = 0
        for raw in proc.stderr:
            if on_stderr is not None and on_stderr(raw.decode("utf-8", errors="replace")):
                continue
            if kept < 200_000:
                stderr_chunks.append(raw)
                kept += len(raw)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_stdout, read_stderr)]
    for t in readers:
        t.start()
    timed_out = False
    deadline = started + timeout_s
    while proc.poll() is None:
        if stop_event.is_set():
            break
        if time.monotonic() >= deadline:
            timed_out = True
            break
        stop_event.wait(min(0.05, max(0.0, deadline - time.monotonic())))
    # Kill the whole group either way: tools the agent left running must not outlive it.
    if proc.poll() is None:
        _kill_tree(proc, grace_s)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    for t in readers:
        t.join(timeout=5)
    duration = time.monotonic() - started
    stderr = redact(b"".join(stderr_chunks).decode("utf-8", errors="replace"), secrets)
    exit_code = None if (timed_out or stop_reason) else proc.returncode
    if out:
        out.write(
            json.dumps(
                {
                    "type": "fapo.process",
                    "command": command,
                    "exit_code": proc.returncode,
                    "timed_out": timed_out,
                    "stopped": stop_reason[0] if stop_reason else None,
                    "duration_s": round(duration, 3),
                    "stderr_tail": stderr[-4000:],
                },
                ensure_ascii=False,
            )
            + "\n"
        )
        out.close()
    return RunResult(
        command=command,
        exit_code=exit_code,
        timed_out=timed_out,
        stopped=stop_reason[0] if stop_reason else None,
        duration_s=duration,
        events=events,
        stderr=stderr,
    )

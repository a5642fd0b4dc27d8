"""Run folders: unique safe ids, one process per folder (flock), status lifecycle, options kept for resume.

A run folder `runs/<tenant>/<run id>/` is held by exactly one process through an exclusive
`flock` on `.lock` (the holder's pid, host and command are written into it, so a second process
names who holds it). `run.json` carries the status: `running` → `finished` | `stopped` |
`failed` (with the reason). A `running` folder whose lock nobody holds was killed: it shows as
`interrupted (resumable)`. Agent workspaces live in the folder's `.scratch/`, emptied whenever
the folder is taken, so a killed run leaves nothing in the system's temp folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fapo.artifacts import read_json, write_json
from fapo.errors import FapoError, ProviderOutage, fs_error

#: Letters, digits, '.', '_' and '-', starting with a letter or digit: safe as a folder name on
#: every platform, in a shell and in a URL, and never '..' or a path.
RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
LOCK_FILE = ".lock"
SCRATCH = ".scratch"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # interrupted on purpose (Ctrl-C, SIGTERM, provider outage): resumable
    FAILED = "failed"  # an error ended it; the reason says which
    INTERRUPTED = "interrupted (resumable)"  # shown only: `running` but nobody holds the lock


def new_run_id() -> str:
    """Timestamp plus 6 random hex digits: two runs started in the same second differ."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def run_id(given: str | None) -> str:
    """The run id given on the command line (checked), else a new unique one."""
    return check_run_id(given) if given else new_run_id()


def check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.fullmatch(run_id) or ".." in run_id:
        raise FapoError(
            f"run id {run_id!r} is not allowed; use up to 80 letters, digits, '.', '_' or '-' "
            "starting with a letter or digit"
        )
    return run_id


# -- the lock ------------------------------------------------------------------------------------
class RunLock:
    """An exclusive, non-blocking flock on `<run dir>/.lock`, released when the process ends."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise fs_error(exc, self.run_dir) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise fs_error(exc, self.path) from None
            raise FapoError(
                f"run folder {self.run_dir} is in use by {holder_text(self.path)}; "
                "wait for it to finish or stop that process"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(sys.argv)[:300],
            "since": time.time(),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        except OSError:
            pass  # the lock holds without its label (e.g. disk full); only the message suffers
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def holder_text(lock_path: Path) -> str:
    try:
        h = json.loads(lock_path.read_text(encoding="utf-8"))
        return f"pid {h['pid']} on {h['host']} ({h['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def is_locked(run_dir: Path) -> bool:
    """Whether some process holds the run folder now."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# -- scratch space for agent workspaces ------------------------------------------------------------
def scratch(run_dir: Path) -> Path:
    """The folder where a run's temporary workspaces go (`tempfile.*(dir=scratch(run_dir))`)."""
    path = run_dir / SCRATCH
    path.mkdir(parents=True, exist_ok=True)
    return path


def clean_scratch(run_dir: Path) -> None:
    shutil.rmtree(run_dir / SCRATCH, ignore_errors=True)


# -- status in run.json --------------------------------------------------------------------------
def mark(run_dir: Path, status: RunStatus, reason: str | None = None) -> None:
    """Set `status` (and `stop_reason`) in run.json; best effort when the disk refuses."""
    path = run_dir / "run.json"
    try:
        info = read_json(path)
        info["status"] = status.value
        if reason is not None:
            info["stop_reason"] = reason
        if status is RunStatus.RUNNING:  # resumed: the last ending no longer applies
            for key in ("stop_reason", "ended"):
                info.pop(key, None)
        else:
            info["ended"] = time.time()
        write_json(path, info)
    except (OSError, ValueError, FapoError):
        pass  # status then reads `interrupted (resumable)`: the lock is gone either way


def shown_status(run_dir: Path, info: dict[str, Any]) -> str:
    status = info.get("status")
    if status == RunStatus.RUNNING and not is_locked(run_dir):
        return RunStatus.INTERRUPTED.value
    return str(status)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FapoError):
        return str(exc)
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


class RunFolder:
    """A run folder taken by this process: `take()` before anything is written into it,
    `recording()` around the work (or `abandon()` if the work never starts).

    A fresh run must not find a run.json (another process may have finished one there between
    the caller's check and the lock), a resume must. Any exception leaving `recording()` records
    `failed` with its reason (Ctrl-C: `stopped`) and propagates. A fresh run that dies before
    writing run.json leaves no folder behind.
    """

    def __init__(self, run_dir: Path, *, resume: bool) -> None:
        self.run_dir, self.resume = run_dir, resume
        self._fresh = not run_dir.exists()
        self._lock = RunLock(run_dir)

    def take(self) -> RunFolder:
        self._lock.acquire()
        has_info = (self.run_dir / "run.json").is_file()
        if self.resume != has_info:
            self.abandon()
            if self.resume:
                raise FapoError(
                    f"no run '{self.run_dir.name}' under {self.run_dir.parent}; see `fapo status`"
                )
            raise FapoError(
                f"run folder {self.run_dir} already exists; use --resume {self.run_dir.name}"
            )
        clean_scratch(self.run_dir)
        if self.resume:
            mark(self.run_dir, RunStatus.RUNNING)
        return self

    def abandon(self) -> None:
        """Let go without recording an ending; a fresh folder without run.json is removed."""
        clean_scratch(self.run_dir)
        self._lock.release()
        if self._fresh and not (self.run_dir / "run.json").is_file():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    @contextlib.contextmanager
    def abandon_on_error(self) -> Iterator[RunFolder]:
        """Around opening the run (writing or checking run.json): on an error, let go; a new
        run whose run.json was written records `failed` (a refused resume changes nothing)."""
        try:
            yield self
        except BaseException as exc:
            if not self.resume and (self.run_dir / "run.json").is_file():
                mark(self.run_dir, RunStatus.FAILED, _reason(exc))
            self.abandon()
            raise

    @contextlib.contextmanager
    def recording(self) -> Iterator[RunFolder]:
        try:
            try:
                yield self
            except OSError as exc:  # a write without a file name (disk full mid-write)
                raise fs_error(exc, self.run_dir) from None
        except BaseException as exc:
            if (self.run_dir / "run.json").is_file():
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    reason = "interrupted; `fapo run --resume` continues it"
                    mark(self.run_dir, RunStatus.STOPPED, reason)
                elif isinstance(exc, ProviderOutage):  # nothing the user wrote is wrong: resumable
                    mark(self.run_dir, RunStatus.STOPPED, str(exc))
                else:
                    mark(self.run_dir, RunStatus.FAILED, _reason(exc))
            raise
        finally:
            self.abandon()


@contextlib.contextmanager
def hold(run_dir: Path, *, resume: bool) -> Iterator[RunFolder]:
    """`RunFolder(...).take()` and `recording()` in one block."""
    folder = RunFolder(run_dir, resume=resume).take()
    with folder.recording():
        yield folder


# -- options kept for resume -----------------------------------------------------------------------
class _Options(Protocol):
    """What a run's options (a frozen dataclass, `RunOptions`) offer to read."""

    @property
    def agent(self) -> str | None: ...
    @property
    def budget(self) -> dict[str, Any]: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def use_cache(self) -> bool: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def agent_settings(self) -> dict[str, Any]: ...


OptionsT = TypeVar("OptionsT", bound=_Options)

#: CLI flag of each option, for the one-line error on a conflicting `--resume`.
_FLAGS = {
    "agent": "--agent",
    "concurrency": "--concurrency",
    "seed": "--seed",
    "use_cache": "--no-cache",
    "max_variants": "--budget-variants",
    "max_calls": "--budget-calls",
    "max_tokens": "--budget-tokens",
    "max_usd": "--budget-usd",
    "max_minutes": "--budget-minutes",
    "model": "--agent-model",
    "max_turns": "--agent-max-turns",
    "timeout_s": "--agent-timeout",
}


def normalize_agent(kind: str | None) -> str | None:
    """`scripted:FILE` with FILE made absolute, so a resume from another folder finds it."""
    if kind and kind.startswith("scripted:"):
        return "scripted:" + str(Path(kind.split(":", 1)[1]).expanduser().resolve())
    return kind


def options_record(
    options: _Options, *, agent: str, seed: int | None, budget: dict[str, Any]
) -> dict[str, Any]:
    """What run.json keeps under "options": everything `restore_options` gives back."""
    return {
        "agent": agent,
        "budget": budget,
        "concurrency": options.concurrency,
        "use_cache": options.use_cache,
        "seed": seed,
        "agent_settings": {k: v for k, v in options.agent_settings.items() if v is not None},
        "models": dict(getattr(options, "models", None) or {}),  # --model ROLE=SPEC overrides
    }


def effective_options(run_dir: Path, options: OptionsT) -> OptionsT:
    """The options a run works with: `scripted:FILE` made absolute; on resume, those it was
    started with (see `restore_options`)."""
    options = dataclasses.replace(options, agent=normalize_agent(options.agent))  # type: ignore[type-var]
    return restore_options(run_dir, options) if getattr(options, "resume", False) else options


def restore_options(run_dir: Path, options: OptionsT) -> OptionsT:
    """The options the run was started with; a flag given now that differs is an error naming it."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise FapoError(f"no run '{run_dir.name}' under {run_dir.parent}; see `fapo status`")
    info = read_json(path)
    saved = info.get("options") or {}
    agent = saved.get("agent", info.get("agent"))
    effective = info.get("budget") or {}  # tenant.yaml budget with the flags applied
    budget = saved.get("budget", effective) or {}  # the flags alone
    then: dict[str, Any] = {
        "agent": agent,
        "concurrency": saved.get("concurrency"),
        "seed": saved.get("seed"),
        "use_cache": saved.get("use_cache", True),
        **effective,
        **(saved.get("agent_settings") or {}),
    }
    now: dict[str, Any] = {
        "agent": normalize_agent(options.agent),
        "concurrency": options.concurrency,
        "seed": options.seed,
        "use_cache": None if options.use_cache else False,  # only --no-cache is a flag
        **options.budget,
        **options.agent_settings,
    }
    models_then = dict(saved.get("models") or {})
    models_now = dict(getattr(options, "models", None) or {})
    if models_now and models_now != models_then:
        raise FapoError(
            f"--model {models_now} conflicts with run '{run_dir.name}', started with "
            f"{models_then or 'the tenant.yaml models'}; resume without it or start a new run"
        )
    raised = {k: v for k, v in options.budget.items() if _raises(k, v, then.get(k))}
    for key, value in now.items():
        if key in raised:  # progress: more budget continues a run that stopped on its budget
            continue
        if value is not None and value != then.get(key):
            flag = _FLAGS.get(key, key)
            shown = "" if key == "use_cache" else f" {value}"
            was = then.get(key)
            raise FapoError(
                f"{flag}{shown} conflicts with run '{run_dir.name}', started with "
                f"{'the cache on' if key == 'use_cache' else f'{flag} {was}' if was is not None else f'no {flag}'}"
                "; resume without it (a run keeps its options) or start a new run"
            )
    return dataclasses.replace(
        options,  # type: ignore[type-var]
        agent=agent,
        budget={**budget, **raised},
        concurrency=then["concurrency"],
        seed=then["seed"],
        use_cache=bool(then["use_cache"]),
        agent_settings=dict(saved.get("agent_settings") or {}),
        **({"models": models_then} if hasattr(options, "models") else {}),
    )


def _raises(key: str, value: Any, was: Any) -> bool:
    """Does budget flag `key` given on `--resume` raise the run's limit (never lower or add one)?"""
    return key in _BUDGET_KEYS and value is not None and was is not None and value > was


_BUDGET_KEYS = ("max_variants", "max_calls", "max_tokens", "max_usd", "max_minutes")


def note_resume(
    run_dir: Path, options: dict[str, Any], budget: dict[str, Any] | None = None
) -> None:
    """Append to run.json's `resumes` when and with which options the run was resumed; a budget
    raised on this resume becomes the run's (`budget`, `options.budget`) for later resumes."""
    path = run_dir / "run.json"
    info = read_json(path)
    info.setdefault("resumes", []).append({"at": time.time(), "options": options})
    if budget is not None:
        info["budget"] = budget
        info.setdefault("options", {})["budget"] = options.get("budget", {})
    write_json(path, info)


# -- listing -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    run_id: str
    tenant: str
    status: str
    stop_reason: str | None
    best: str | None
    best_val: float | None
    spent: dict[str, Any]
    started: float | None


def summarize(run_dir: Path) -> RunSummary:
    info = read_json(run_dir / "run.json")
    best = info.get("best")
    return RunSummary(
        run_dir=run_dir,
        run_id=str(info.get("run_id", run_dir.name)),
        tenant=str(info.get("tenant", run_dir.parent.name)),
        status=shown_status(run_dir, info),
        stop_reason=info.get("stop_reason"),
        best=best,
        best_val=(info.get("val") or {}).get(best) if best else None,
        spent=info.get("spent") or {},
        started=info.get("started"),
    )


def tenant_runs(runs_dir: Path, tenant: str) -> list[Path]:
    """Run folders of one tenant, oldest first."""
    folder = runs_dir / tenant
    if not folder.is_dir():
        return []
    found = [p.parent for p in folder.glob("*/run.json")]
    return sorted(found, key=lambda p: ((runs_json_started(p)), p.name))


def runs_json_started(run_dir: Path) -> float:
    try:
        return float(read_json(run_dir / "run.json").get("started") or 0)
    except (OSError, ValueError):
        return 0.0


def spend_text(spent: dict[str, Any]) -> str:
    if not spent:
        return "nothing spent yet"
    return (
        f"{spent.get('variants', 0)} candidates · {spent.get('calls', 0)} calls · "
        f"{int(spent.get('input_tokens', 0) or 0) + int(spent.get('output_tokens', 0) or 0)} "
        f"tokens · ${float(spent.get('usd', 0) or 0):.3f}"
    )

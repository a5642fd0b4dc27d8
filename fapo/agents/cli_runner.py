"""Run an agent CLI as a contained subprocess, and watch what it touched.

Agent CLIs are untrusted: they run model-chosen tools. So every run gets its own process group
(killed whole on timeout, so tool subprocesses die too), a closed stdin (an open one makes Codex
wait forever), a minimal environment (only what the agent needs: never the task model's keys),
and a transcript with every known secret redacted. What the agent wrote is judged from disk,
never from its exit code.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from fapo import sandbox
from fapo.agents.base import (
    AgentUsage,
    AttributionAnswer,
    AttributionRequest,
    Brief,
    Invocation,
    Proposal,
    ProposalFailure,
    ReviewRequest,
    Role,
    Verdict,
)
from fapo.agents.prompts import (
    AnswerError,
    ReviewAnswer,
    parse_attribution,
    parse_verdict,
    request_markdown,
    task_prompt,
)
from fapo.artifacts import snapshot
from fapo.records import UsageSource
from fapo.sandbox import detect_outside_writes  # noqa: F401  (re-exported)
from fapo.settings import AgentSettings

# Variables any agent process may see: locale, paths, CA bundles. Keys are added per agent.
BASE_ENV: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
)

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.I)
_SECRET_SHAPES = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9_\-\.=]{6,}"),
    re.compile(
        r"(?i)\b([A-Z0-9_]*(?:api[_-]?key|token|secret|password))(\s*[=:]\s*)[^\s,'\"}]{4,}"
    ),
]
REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every known secret value and anything shaped like a key replaced."""
    for s in sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    text = _SECRET_SHAPES[0].sub(REDACTED, text)
    text = _SECRET_SHAPES[1].sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _SECRET_SHAPES[2].sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of variables whose names say they hold a secret."""
    return [v for k, v in env.items() if _SECRET_NAME.search(k) and v]


def build_env(
    source: Mapping[str, str],
    *,
    allow: Iterable[str] = (),
    set_vars: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Allow-list `source`: BASE_ENV plus `allow` (e.g. the agent's own key), then `set_vars`."""
    names = [*BASE_ENV, *allow]
    env = {k: source[k] for k in names if k in source}
    env.update(set_vars or {})
    return env


def find_binary(name: str, project_root: Path, env: Mapping[str, str] | None = None) -> str | None:
    """`<project_root>/node_modules/.bin/<name>` first (pinned install), then PATH."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) else None
    local = project_root / "node_modules" / ".bin" / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    path = (env or os.environ).get("PATH", os.defpath)
    return shutil.which(name, path=path)


def merged_settings(
    base: AgentSettings, *layers: Mapping[str, Any] | BaseModel | None
) -> AgentSettings:
    """`base` with every non-None field of each layer applied in order: fapo.toml, then the
    tenant's `agent:` block, then command-line flags. Unknown keys are ignored (e.g. `kind`)."""
    data = base.model_dump()
    for layer in layers:
        if layer is None:
            continue
        items = layer.model_dump() if isinstance(layer, BaseModel) else dict(layer)
        data.update({k: v for k, v in items.items() if k in data and v is not None})
    return AgentSettings(**data)


# -- running ---------------------------------------------------------------------------------


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


# -- what changed on disk --------------------------------------------------------------------


def changed_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


# -- the shared role flow ----------------------------------------------------------------------


def inspected_exist(answer: ReviewAnswer, workspace: Path) -> ReviewAnswer:
    """Fail-closed: every file a reviewer says it inspected is in its workspace (a reviewer
    naming files it could not have read has not reviewed the change)."""
    root = workspace.resolve()
    missing = [
        f
        for f in answer.inspected
        if not (root / f.removeprefix("./")).resolve().is_relative_to(root)
        or not (root / f.removeprefix("./")).exists()
    ]
    if missing:
        raise AnswerError(f"inspected: not in your working directory: {missing[:5]}")
    return answer


@dataclass
class Parsed:
    """What an adapter read from its CLI's event stream."""

    is_error: bool
    error: str | None
    final_text: str
    turns: int
    input_tokens: int
    output_tokens: int
    usd: float | None  # the CLI's own figure, when it reports one
    permission_denials: list[Any] = field(default_factory=list)
    refused: list[Any] = field(default_factory=list)  # tool calls refused without a denial
    usage_source: UsageSource = UsageSource.REPORTED


class CLIAgent:
    """Propose / attribute / review through a headless agent CLI; subclasses build the command
    line and environment and parse the event stream. Answers are validated here, never trusted."""

    name = "cli"
    provider = ""  # price-table prefix: "anthropic" / "openai"

    def __init__(
        self,
        settings: AgentSettings,
        *,
        project_root: Path,
        prices: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.project_root = Path(project_root)
        self.prices = dict(prices or {})
        self.source_env = dict(os.environ if env is None else env)
        #: What is left of the run's USD budget, or None without one (`bind_budget`).
        self.usd_left: Callable[[], float | None] = lambda: None
        self._spent_in_call = 0.0  # spent by invocations of the current role call

    # hooks ------------------------------------------------------------------------------------

    def argv(
        self, binary: str, role: Role, prompt: str, workspace: Path, max_usd: float | None = None
    ) -> list[str]:
        """The command line; `max_usd` is what is left of the run's USD budget (an adapter
        whose CLI can enforce it passes it on, e.g. Claude Code's `--max-budget-usd`)."""
        raise NotImplementedError

    def stderr_hook(self) -> Callable[[str], bool] | None:
        """Called with each stderr line; True = consumed (see `run_cli`)."""
        return None

    def environment(self) -> dict[str, str]:
        raise NotImplementedError

    def parse(self, result: RunResult) -> Parsed:
        raise NotImplementedError

    def watcher(self) -> Callable[[dict[str, Any]], str | None] | None:
        return None

    @property
    def contained(self) -> bool:
        """Runs inside bubblewrap (fapo.sandbox): cannot reach the host's TMP or HOME."""
        return self.settings.sandbox

    #: Folders created inside the sandbox's tmpfs HOME before the CLI starts.
    home_dirs: tuple[str, ...] = ()

    def sandboxed_env(self, env: dict[str, str]) -> dict[str, str]:
        """The environment inside the sandbox: host paths (config dirs) mean nothing there."""
        return env

    def outside_write_attempts(self, parsed: Parsed, workspace: Path) -> list[str]:
        """Denied attempts to write outside the workspace, as `tool: target` strings."""
        return []

    # plumbing ---------------------------------------------------------------------------------

    @property
    def binary(self) -> str | None:
        env = {"PATH": self.source_env.get("PATH", os.defpath)}
        return find_binary(self.settings.binary or self.default_binary, self.project_root, env)

    default_binary = ""

    def _transcript(self, workspace: Path, role: Role) -> Path:
        folder = workspace.resolve().parent
        n = 1
        while (folder / f"agent-{self.name}-{role}-{n}.jsonl").exists():
            n += 1
        return folder / f"agent-{self.name}-{role}-{n}.jsonl"

    def _usd(self, parsed: Parsed) -> float:
        if parsed.usd is not None:
            return float(parsed.usd)
        price = self.prices.get(f"{self.provider}:{self.settings.model}")
        if price is None:
            return 0.0
        inp = price["input"] if isinstance(price, Mapping) else price.input
        outp = price["output"] if isinstance(price, Mapping) else price.output
        return (parsed.input_tokens * inp + parsed.output_tokens * outp) / 1_000_000

    def _left(self) -> float | None:
        left = self.usd_left()
        return None if left is None else left - self._spent_in_call

    def invoke(self, role: Role, prompt: str, workspace: Path) -> tuple[Invocation, Parsed]:
        """One CLI run in `workspace`: command, transcript, usage, errors, all recorded.

        With `settings.sandbox` (the default) the CLI runs inside bubblewrap (fapo.sandbox):
        the workspace is its only writable path (read-only for attribute/review), with a
        throwaway HOME and TMP; nothing else of the project exists for it. The run's USD budget
        is checked before the call (none is started once it is spent) and handed to the CLI
        where it can hold it within the call (see `argv`)."""
        inv, parsed = self._invoke(role, prompt, workspace)
        self._spent_in_call += inv.usage.usd
        return inv, parsed

    def _invoke(self, role: Role, prompt: str, workspace: Path) -> tuple[Invocation, Parsed]:
        left = self._left()
        if left is not None and left <= 0:
            msg = f"USD budget spent (${-left:.4f} over) before this {role} call; not started"
            parsed = Parsed(True, msg, "", 0, 0, 0, 0.0, usage_source=UsageSource.NONE)
            usage = AgentUsage(source=UsageSource.NONE)
            return Invocation(
                agent=self.name, role=role, is_error=True, error=msg, usage=usage
            ), parsed
        binary = self.binary
        if binary is None:
            want = self.settings.binary or self.default_binary
            msg = (
                f"{want!r} not found in node_modules/.bin or PATH: run .ci/install-agents.sh "
                f"or set agents.{self.name}.binary in fapo.toml"
            )
            parsed = Parsed(True, msg, "", 0, 0, 0, 0.0)
            return Invocation(agent=self.name, role=role, is_error=True, error=msg), parsed
        env = self.environment()
        ws = workspace.resolve()
        if self.settings.sandbox:
            why = sandbox.unavailable()
            if why:
                msg = f"refusing to run {self.name} without a sandbox: {why} (or pass --no-sandbox)"
                parsed = Parsed(True, msg, "", 0, 0, 0, 0.0)
                return Invocation(agent=self.name, role=role, is_error=True, error=msg), parsed
            tool_args, inner = sandbox.tool_mount(binary)
            box = sandbox.agent_sandbox(
                ws, writable=role == "propose", tool_args=tool_args, home_dirs=self.home_dirs
            )
            cmd = self.argv(inner, role, prompt, ws, max_usd=left)
            argv, env = box.wrap(cmd, self.sandboxed_env(env))
        else:
            argv = self.argv(binary, role, prompt, ws, max_usd=left)
        transcript = self._transcript(workspace, role)
        result = run_cli(
            argv,
            cwd=workspace,
            env=env,
            timeout_s=self.settings.timeout_s,
            transcript=transcript,
            secrets=secret_values(self.source_env),
            watch=self.watcher(),
            on_stderr=self.stderr_hook(),
        )
        parsed = self.parse(result)
        error = parsed.error
        if result.timed_out:
            error = f"timed out after {self.settings.timeout_s:g}s; process group killed"
        elif result.stopped:
            error = f"stopped: {result.stopped}; process group killed"
        inv = Invocation(
            agent=self.name,
            role=role,
            command=result.command,
            exit_code=result.exit_code,
            is_error=parsed.is_error or result.timed_out or bool(result.stopped),
            error=error,
            timed_out=result.timed_out,
            permission_denials=parsed.permission_denials,
            refused=parsed.refused,
            usage=AgentUsage(
                usd=self._usd(parsed),
                input_tokens=parsed.input_tokens,
                output_tokens=parsed.output_tokens,
                turns=parsed.turns,
                duration_s=round(result.duration_s, 3),
                source=parsed.usage_source,
            ),
            transcript_file=transcript.name,
            final_text=parsed.final_text,
        )
        return inv, parsed

    # the Agent protocol -----------------------------------------------------------------------

    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        self._spent_in_call = 0.0
        before = snapshot(workspace)
        prompt = task_prompt("propose", attempt=len(brief.history) + 1)
        inv, parsed = self.invoke("propose", prompt, workspace)
        changed = changed_files(before, snapshot(workspace))
        outside = self.outside_write_attempts(parsed, workspace.resolve())
        failure, kind = None, None
        if inv.is_error:
            failure = f"{self.name} failed: {inv.error or 'error result'}"
            kind = ProposalFailure.AGENT_ERROR
        elif outside:
            failure = f"{self.name} tried to write outside the workspace: {'; '.join(outside[:5])}"
            kind = ProposalFailure.OUTSIDE_WRITE
        elif not changed:
            failure = f"{self.name} changed no file in the workspace"
            kind = ProposalFailure.NO_CHANGE
        return Proposal(
            rationale=inv.final_text.strip()[:4000],
            invocations=[inv],
            failure=failure,
            failure_kind=kind,
        )

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        invocations, result, failure = self._ask(
            "attribute", request, workspace, lambda text: parse_attribution(text, request)
        )
        return AttributionAnswer(clusters=result or [], invocations=invocations, failure=failure)

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        invocations, result, failure = self._ask(
            "review",
            request,
            workspace,
            lambda text: inspected_exist(parse_verdict(text), workspace),
        )
        if result is None:
            return Verdict(approve=False, reasons=[], invocations=invocations, failure=failure)
        return Verdict(
            approve=result.approve,
            reasons=result.reasons,
            invocations=invocations,
            inspected=result.inspected,
            findings=result.findings,
        )

    def _ask(
        self,
        role: Role,
        request: AttributionRequest | ReviewRequest,
        workspace: Path,
        parse: Callable[[str], Any],
    ) -> tuple[list[Invocation], Any, str | None]:
        """Run a read-only role; retry once with the validation error; never trust bad JSON."""
        self._spent_in_call = 0.0
        text = request_markdown(request)
        invocations: list[Invocation] = []
        problem: str | None = None
        for _attempt in range(2):
            before = snapshot(workspace)
            inv, _ = self.invoke(role, task_prompt(role, problem, text), workspace)
            changed = changed_files(before, snapshot(workspace))
            if inv.is_error:
                invocations.append(inv)
                return invocations, None, f"{self.name} {role} failed: {inv.error or 'error'}"
            if changed:
                invocations.append(inv.model_copy(update={"error": "changed the workspace"}))
                return (
                    invocations,
                    None,
                    f"the {role} agent changed files it may only read: {', '.join(changed[:10])}",
                )
            try:
                value = parse(inv.final_text)
            except AnswerError as exc:
                problem = str(exc)
                invocations.append(inv.model_copy(update={"error": f"invalid answer: {problem}"}))
                continue
            invocations.append(inv)
            return invocations, value, None
        return invocations, None, f"invalid {role} answer after one retry: {problem}"

    def ping(self, workspace: Path) -> Invocation:
        """A trivial read-only request (for `fapo doctor`): can this agent answer at all?"""
        inv, _ = self.invoke("review", "Reply with the single word OK.", workspace)
        return inv


class _BudgetView(Protocol):
    """What `bind_budget` reads of fapo.budget.Budget."""

    @property
    def usd(self) -> float: ...

    @property
    def spec(self) -> Any: ...


A = TypeVar("A")


def bind_budget(agent: A, budget: _BudgetView) -> A:
    """Let a CLI agent see what is left of the run's USD budget (`max_usd`), so no call starts
    once it is spent and Claude Code holds it within a call (`--max-budget-usd`). Other agents
    are returned unchanged. Idempotent."""
    if isinstance(agent, CLIAgent):

        def left() -> float | None:
            cap = budget.spec.max_usd
            return None if cap is None else float(cap) - budget.usd

        agent.usd_left = left
    return agent

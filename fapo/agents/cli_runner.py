"""Propose / attribute / review through a headless agent CLI, and judge what it did from disk.

Agent CLIs are untrusted: they run model-chosen tools. Each run is a contained subprocess
(fapo/agents/process.py) with a minimal environment and redacted transcripts
(fapo/agents/agent_env.py); what the agent wrote is judged from disk, never from its exit code,
and its answers are validated here, never trusted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from fapo import sandbox
from fapo.agents.agent_env import REDACTED as REDACTED  # re-exported (tests)
from fapo.agents.agent_env import redact as redact  # re-exported (tests)
from fapo.agents.agent_env import secret_values
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
from fapo.agents.process import RunResult, find_binary, run_cli
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

"""One run of an agent CLI as a recorded `Invocation`: sandbox, USD budget, transcript, usage."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fapo import sandbox
from fapo.agents.agent_env import secret_values
from fapo.agents.base import AgentUsage, Invocation, Role
from fapo.agents.process import RunResult, find_binary, run_cli
from fapo.records import UsageSource
from fapo.settings import AgentSettings


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


class CLIInvoker:
    """Runs a headless agent CLI once per `invoke`; subclasses build the command line and
    environment and parse the event stream (the role flow on top is `CLIAgent`)."""

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

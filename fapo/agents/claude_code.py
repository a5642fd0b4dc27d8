"""Claude Code as the optimizing agent: headless `claude -p`, one fresh session per role.

Containment, as measured with 2.1.197 (docs/agents.md): `--tools` limits which tools exist;
permissions stay scoped to the working directory because nothing is pre-approved —
`--allowedTools Read` (or a user settings file allowing it) would let the agent read anywhere,
e.g. the tenant's validation labels, so we pass neither and load no setting sources. Propose
runs in `acceptEdits` (edits inside the workspace only); attribute/review in `dontAsk` with
read tools only. A denied tool still exits 0: denials are recorded and judged here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fapo.agents.agent_env import build_env
from fapo.agents.base import Role
from fapo.agents.cli_invoke import Parsed
from fapo.agents.cli_runner import CLIAgent
from fapo.agents.process import RunResult
from fapo.agents.prompts import system_rules
from fapo.records import UsageSource

PROPOSE_TOOLS = "Read,Edit,Write,Glob,Grep"
READ_TOOLS = "Read,Glob,Grep"
_WRITE_TOOLS = {"Write", "Edit", "MultiEdit", "NotebookEdit"}

# Quiet, offline-friendly defaults; a variable listed in pass_env overrides them.
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_MAX_RETRIES": "2",
    # No auto-memory: 2.1.197 otherwise writes notes under $HOME/.claude/projects/… (measured:
    # 53 folders after ~50 runs). Inside the sandbox HOME is a tmpfs anyway; this also holds
    # for --no-sandbox runs.
    "CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1",
}
#: The same, as a setting (belt and braces: the env name has changed between versions).
SETTINGS_JSON = '{"autoMemoryEnabled": false}'


class ClaudeCodeAgent(CLIAgent):
    name = "claude-code"
    provider = "anthropic"
    default_binary = "claude"

    def argv(
        self, binary: str, role: Role, prompt: str, workspace: Path, max_usd: float | None = None
    ) -> list[str]:
        s = self.settings
        cmd = [
            binary,
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--no-session-persistence",
            "--setting-sources",
            "",
            "--strict-mcp-config",
            "--settings",
            SETTINGS_JSON,
            "--max-turns",
            str(s.max_turns),
            "--append-system-prompt",
            system_rules(role),
        ]
        if s.model:
            cmd += ["--model", s.model]
        if max_usd is not None:
            # Claude Code checks this after each model response and stops with
            # `error_max_budget_usd` (measured with 2.1.197: a 0.0005 cap stopped after the first
            # response, reported at $0.0006), so a call overshoots by at most one response.
            cmd += ["--max-budget-usd", f"{max(max_usd, 0.0):.6f}"]
        if role == "propose":
            cmd += ["--tools", PROPOSE_TOOLS, "--permission-mode", "acceptEdits"]
        else:
            cmd += ["--tools", READ_TOOLS, "--permission-mode", "dontAsk"]
        return cmd + list(s.extra_args)

    def environment(self) -> dict[str, str]:
        """BASE_ENV, QUIET_ENV, `ANTHROPIC_API_KEY` (from `api_key_env` when set, else the
        parent's ANTHROPIC_API_KEY), `ANTHROPIC_BASE_URL` when set, and `pass_env`."""
        s, src = self.settings, self.source_env
        set_vars = dict(QUIET_ENV)
        key = src.get(s.api_key_env or "ANTHROPIC_API_KEY")
        if key:
            set_vars["ANTHROPIC_API_KEY"] = key
        if s.base_url:
            set_vars["ANTHROPIC_BASE_URL"] = s.base_url
        env = build_env(src, allow=["CLAUDE_CONFIG_DIR"], set_vars=set_vars)
        env.update({k: src[k] for k in s.pass_env if k in src})
        return env

    def sandboxed_env(self, env: dict[str, str]) -> dict[str, str]:
        # A host config dir does not exist inside; Claude Code uses the tmpfs HOME's ~/.claude.
        return {k: v for k, v in env.items() if k != "CLAUDE_CONFIG_DIR"}

    def parse(self, result: RunResult) -> Parsed:
        streamed_in, streamed_out, turns = _streamed_usage(result.events)
        errored = _errored_tool_calls(result.events)
        final = next((e for e in reversed(result.events) if e.get("type") == "result"), None)
        if final is None:
            # Stopped before its result (timeout, killed): the usage of every response it
            # streamed still counts (the output tokens of a response cut short are unknown).
            tail = result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else []
            return Parsed(
                is_error=True,
                error="no result event" + (f": {tail[0]}" if tail else ""),
                final_text="",
                turns=turns,
                input_tokens=streamed_in,
                output_tokens=streamed_out,
                usd=None,
                refused=errored,
                usage_source=UsageSource.PARTIAL if streamed_in or turns else UsageSource.NONE,
            )
        usage = final.get("usage") or {}
        is_error = bool(final.get("is_error")) or result.exit_code not in (0, None)
        error = None
        if is_error:
            status = final.get("api_error_status")
            text = str(final.get("result") or final.get("subtype") or "error")
            error = (f"API status {status}: " if status else "") + text[:500]
            if not final.get("is_error"):
                error = f"exit code {result.exit_code}: {error}"
        cost = final.get("total_cost_usd")
        denials = list(final.get("permission_denials") or [])
        denied = {str(d.get("tool_use_id")) for d in denials if isinstance(d, dict)}
        # `error_max_budget_usd` reports its cost but zero usage (2.1.197): keep the larger of
        # the report and what was streamed.
        return Parsed(
            is_error=is_error,
            error=error,
            final_text=str(final.get("result") or "") if not is_error else "",
            turns=int(final.get("num_turns") or 0),
            input_tokens=max(_input_tokens(usage), streamed_in),
            output_tokens=max(int(usage.get("output_tokens") or 0), streamed_out),
            usd=float(cost) if cost is not None else None,
            permission_denials=denials,
            refused=[r for r in errored if str(r["tool_use_id"]) not in denied],
        )

    def outside_write_attempts(self, parsed: Parsed, workspace: Path) -> list[str]:
        hits = []
        # A write refused before the permission check (e.g. the file was never read) is an
        # attempt all the same.
        for d in [*parsed.permission_denials, *parsed.refused]:
            if not isinstance(d, dict) or d.get("tool_name") not in _WRITE_TOOLS:
                continue
            inp = d.get("tool_input") or {}
            target = inp.get("file_path") or inp.get("notebook_path")
            if not target:
                continue
            path = (workspace / target).resolve()  # absolute targets stay absolute
            if not path.is_relative_to(workspace):
                hits.append(f"{d['tool_name']}: {target}")
        return hits


def _streamed_usage(events: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(input tokens, output tokens, responses) of the assistant messages streamed so far.
    Claude Code emits one `assistant` event per content block, each carrying its message's
    usage: counted once per message id."""
    seen: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("type") != "assistant":
            continue
        msg = e.get("message") or {}
        key = str(msg.get("id") or len(seen))
        usage = msg.get("usage") or {}
        prev = seen.get(key, {})
        seen[key] = {k: max(int(usage.get(k) or 0), int(prev.get(k) or 0)) for k in
                     {*usage, *prev} if isinstance(usage.get(k, prev.get(k)), int)}  # fmt: skip
    inp = sum(_input_tokens(u) for u in seen.values())
    out = sum(int(u.get("output_tokens") or 0) for u in seen.values())
    return inp, out, len(seen)


def _errored_tool_calls(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls whose result is an error, from the stream: a tool that is not offered ("No
    such tool available"), a write the tool refused before any permission check ("File has
    not been read yet"), a denied read. The result event's `permission_denials` says which of
    them were denials; the rest are refused attempts that leave no other record."""
    calls: dict[str, dict[str, Any]] = {}
    errored: list[dict[str, Any]] = []
    for e in events:
        content = (e.get("message") or {}).get("content")
        if not isinstance(content, list):
            continue
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use":
                calls[str(block.get("id"))] = block
            elif block.get("type") == "tool_result" and block.get("is_error"):
                call = calls.get(str(block.get("tool_use_id")), {})
                text = block.get("content")
                text = text if isinstance(text, str) else str(text)
                errored.append(
                    {
                        "tool_name": call.get("name"),
                        "tool_use_id": block.get("tool_use_id"),
                        "tool_input": call.get("input") or {},
                        "error": text[:300],
                    }
                )
    return errored


def _input_tokens(usage: dict[str, Any]) -> int:
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    return sum(int(usage.get(k) or 0) for k in keys)

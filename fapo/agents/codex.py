"""Codex as the optimizing agent: `codex exec --json`, one fresh, ephemeral session per role.

Containment, as measured with 0.171.0 (docs/agents.md): `-s workspace-write` lets tools write
the workspace *and /tmp and $TMPDIR* unless both are excluded, so we exclude them; attribute
and review run `-s read-only`. The sandbox does not restrict reads. A rejected patch or a
blocked write still exits 0: it only shows on stderr or in a tool's output, so we collect
those as permission denials. `codex exec` has no turn limit: we count tool calls in the event
stream and stop the process group past `max_turns`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fapo.agents.agent_env import build_env
from fapo.agents.base import Role
from fapo.agents.cli_invoke import Parsed
from fapo.agents.cli_runner import CLIAgent
from fapo.agents.process import RunResult
from fapo.agents.prompts import system_rules
from fapo.records import UsageSource

PROVIDER_ID = "fapo"
_TOOL_ITEMS = {"command_execution", "file_change", "mcp_tool_call", "web_search"}
_BLOCKED = re.compile(r"Read-only file system|Permission denied|Operation not permitted")
# Blocked actions show only in Codex's own log on stderr (at RUST_LOG=warn), e.g.
# "patch rejected: writing outside of the project; rejected by user approval settings" or
# "recorded sandbox violation: resource=filesystem ... reason=read_only_file_system".
# Inside fapo's sandbox a path outside the workspace mostly does not exist at all: a shell
# redirect to it fails with "No such file or directory" rather than a sandbox denial (measured
# with `echo x > <tenant>/scorer.py`). The attempt is still recorded, by its target.
_REDIRECT_FAIL = re.compile(
    r"sh: line \d+: (/[^:\n]+): (No such file or directory|Read-only file system|Permission denied)"
)
_STDERR_DENIAL = re.compile(r"(patch rejected|sandbox violation)[^\n]*", re.I)

OFFLINE_CONFIG = (
    "analytics.enabled=false",
    "features.plugins=false",
    "check_for_update_on_startup=false",
    "project_doc_max_bytes=0",  # no AGENTS.md from the workspace: the agent could plant one
    "sandbox_workspace_write.exclude_slash_tmp=true",
    "sandbox_workspace_write.exclude_tmpdir_env_var=true",
    'web_search="disabled"',  # no web tool: the agent works from its workspace alone
    # Tool subprocesses (exec_command) get a core environment without the agent's key.
    'shell_environment_policy.inherit="core"',
    'shell_environment_policy.exclude=["*KEY*", "*TOKEN*", "*SECRET*"]',
)
#: Codex 0.171.0's `--json` stream reports usage only in `turn.completed`, which a run stopped
#: by the timeout or the turn limit never reaches (measured: 3 requests, 0 tokens recorded).
#: Its SSE trace logs every `response.completed` with its usage on stderr.
RUST_LOG = "warn,codex_api::sse::responses=trace"
_SSE_LINE = "codex_api::sse::responses"
_SSE_EVENT = "SSE event: "
#: The only variable carrying the agent's key into Codex (as env_key of a custom provider too).
KEY_VAR = "CODEX_API_KEY"


def _toml_str(text: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML for what json.dumps emits)."""
    return json.dumps(text)


class CodexAgent(CLIAgent):
    name = "codex"
    provider = "openai"
    default_binary = "codex"

    def _agent_key(self) -> str | None:
        """`api_key_env`'s value when set, else the parent's CODEX_API_KEY — never the task
        model's OPENAI_API_KEY unless the user names it as api_key_env on purpose."""
        return self.source_env.get(self.settings.api_key_env or KEY_VAR)

    def argv(
        self, binary: str, role: Role, prompt: str, workspace: Path, max_usd: float | None = None
    ) -> list[str]:
        # Codex has no spend limit of its own: the budget is checked before each call instead.
        s = self.settings
        cmd = [
            binary,
            "exec",
            "--json",
            "--ephemeral",
            "--ignore-user-config",
            "--ignore-rules",
            "--skip-git-repo-check",
            "-C",
            str(workspace),
            "-s",
            self._sandbox_mode(role),
        ]
        if s.model:
            cmd += ["-m", s.model]
        for kv in OFFLINE_CONFIG:
            cmd += ["-c", kv]
        cmd += ["-c", f"developer_instructions={_toml_str(system_rules(role))}"]
        if s.base_url:
            provider = (
                f'{{name="{PROVIDER_ID}", base_url={_toml_str(s.base_url)}, wire_api="responses", '
                f'env_key="{KEY_VAR}", request_max_retries=2, stream_max_retries=2}}'
            )
            cmd += ["-c", f"model_provider={PROVIDER_ID}"]
            cmd += ["-c", f"model_providers.{PROVIDER_ID}={provider}"]
        return [*cmd, *s.extra_args, "--", prompt]

    def _sandbox_mode(self, role: Role) -> str:
        # Codex's own bwrap also works nested inside fapo's (measured with 0.171.0 under bwrap
        # 0.8.0: in workspace-write a patch in the workspace applied, `echo > /tmp/x` failed
        # with "Read-only file system"; in read-only the patch was rejected). Two layers, then:
        # the outer one hides everything but the workspace, the inner one keeps write limits.
        return "workspace-write" if role == "propose" else "read-only"

    def environment(self) -> dict[str, str]:
        """BASE_ENV, RUST_LOG, CODEX_HOME (outside the sandbox only), CODEX_API_KEY = the agent
        key (see `_agent_key`), and `pass_env`. Never OPENAI_API_KEY by default."""
        s, src = self.settings, self.source_env
        # warn: blocked actions are logged (see _STDERR_DENIAL); the SSE trace carries each
        # response's usage, so a killed or turn-limited run still records its tokens.
        set_vars = {"RUST_LOG": RUST_LOG}
        key = self._agent_key()
        if key:
            set_vars[KEY_VAR] = key
        env = build_env(src, allow=["CODEX_HOME"], set_vars=set_vars)
        env.update({k: src[k] for k in s.pass_env if k in src})
        return env

    home_dirs = (".codex",)

    def sandboxed_env(self, env: dict[str, str]) -> dict[str, str]:
        from fapo.sandbox import HOME

        return {**env, "CODEX_HOME": f"{HOME}/.codex"}

    def stderr_hook(self) -> Callable[[str], bool]:
        usage: dict[str, tuple[int, int]] = {}
        self._sse_usage = usage

        def hook(line: str) -> bool:
            if _SSE_LINE not in line:
                return False
            if '"response.completed"' in line and _SSE_EVENT in line:
                try:
                    event = json.loads(line.split(_SSE_EVENT, 1)[1])
                    resp = event.get("response") or {}
                    u = resp.get("usage") or {}
                    usage[str(resp.get("id") or len(usage))] = (
                        int(u.get("input_tokens") or 0),
                        int(u.get("output_tokens") or 0),
                    )
                except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
                    pass
            return True  # trace lines are consumed, never kept

        return hook

    def watcher(self) -> Callable[[dict[str, Any]], str | None]:
        limit = self.settings.max_turns
        seen: set[str] = set()

        def watch(event: dict[str, Any]) -> str | None:
            item = event.get("item") or {}
            if event.get("type") == "item.started" and item.get("type") in _TOOL_ITEMS:
                seen.add(str(item.get("id")))
                if len(seen) > limit:
                    return f"more than max_turns={limit} tool calls"
            return None

        return watch

    def parse(self, result: RunResult) -> Parsed:
        final_text, error = "", None
        input_tokens = output_tokens = turns = 0
        completed = failed = False
        denials: list[Any] = []
        for e in result.events:
            kind = e.get("type")
            item = e.get("item") or {}
            if kind == "turn.completed":
                completed = True
                u = e.get("usage") or {}
                input_tokens += int(u.get("input_tokens") or 0)
                output_tokens += int(u.get("output_tokens") or 0)
            elif kind == "turn.failed":
                failed = True
                error = str((e.get("error") or {}).get("message") or "turn failed")
            elif kind == "error" and error is None:
                error = str(e.get("message") or "error")
            elif kind == "item.completed":
                itype = item.get("type")
                if itype == "agent_message":
                    final_text = str(item.get("text") or "")
                    turns += 1
                elif itype in _TOOL_ITEMS:
                    turns += 1
                    denials += _item_denials(item)
        for m in _STDERR_DENIAL.finditer(result.stderr):
            tool = "apply_patch" if m.group(1).lower().startswith("patch") else "sandbox"
            denials.append({"tool": tool, "detail": m.group(0).strip()[:300]})
        streamed = list(getattr(self, "_sse_usage", {}).values())
        source = UsageSource.REPORTED
        if not completed:
            # Stopped mid-turn: the responses the SSE trace saw are what was spent.
            input_tokens = sum(i for i, _ in streamed)
            output_tokens = sum(o for _, o in streamed)
            source = UsageSource.PARTIAL if streamed else UsageSource.NONE
        refused = [
            {"tool_name": "exec_command", "command": item.get("command"),
             "error": f"exit code {item.get('exit_code')}: "
                      + str(item.get("aggregated_output") or "")[-200:]}
            for e in result.events
            if e.get("type") == "item.completed"
            and (item := e.get("item") or {}).get("type") == "command_execution"
            and item.get("exit_code") not in (0, None)
            and not _item_denials(item)
        ]  # fmt: skip
        is_error = failed or not completed or result.exit_code not in (0, None)
        if is_error and error is None:
            tail = result.stderr.strip().splitlines()[-1:] if result.stderr.strip() else []
            error = f"exit code {result.exit_code}" + (f": {tail[0]}" if tail else "")
        return Parsed(
            is_error=is_error,
            error=error[:500] if error else None,
            final_text=final_text if not is_error else "",
            turns=turns,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            usd=None,  # Codex reports no cost: priced from settings.prices
            permission_denials=denials,
            refused=refused,
            usage_source=source,
        )

    def outside_write_attempts(self, parsed: Parsed, workspace: Path) -> list[str]:
        # In workspace-write the workspace is writable, so any blocked write aimed elsewhere.
        hits = []
        for d in parsed.permission_denials:
            target = d.get("target")
            if target and not Path(target).resolve().is_relative_to(workspace):
                hits.append(f"{d.get('tool')}: write to {target}")
            elif re.search(r"outside|read.only.file.system", str(d.get("detail", "")), re.I):
                hits.append(f"{d.get('tool')}: {d.get('command') or d.get('detail')}")
        return hits


def _item_denials(item: dict[str, Any]) -> list[dict[str, Any]]:
    if item.get("type") == "file_change" and item.get("status") == "failed":
        return [{"tool": "apply_patch", "detail": "patch failed", "changes": item.get("changes")}]
    if item.get("type") == "command_execution":
        out = str(item.get("aggregated_output") or "")
        redirects = [
            {"tool": "exec_command", "command": item.get("command"), "target": m.group(1),
             "detail": m.group(0)[:300]}
            for m in _REDIRECT_FAIL.finditer(out)
        ]  # fmt: skip
        if redirects:
            return redirects
        m = _BLOCKED.search(out)
        if m:
            line = next((ln for ln in out.splitlines() if _BLOCKED.search(ln)), m.group(0))
            return [{"tool": "exec_command", "command": item.get("command"), "detail": line[:300]}]
    return []

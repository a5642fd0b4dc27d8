"""Test helpers: build a real-CLI agent pointed at a scripted loopback server, in a tmp HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fapo.agents.claude_code import ClaudeCodeAgent
from fapo.agents.cli_runner import find_binary
from fapo.agents.codex import CodexAgent
from fapo.settings import AgentSettings, Price

ROOT = Path(__file__).resolve().parents[2]
AGENT_KEY = "sk-agent-test-key-0123456789"
TASK_KEY = "sk-task-model-key-9876543210"
PRICES = {
    "anthropic:claude-sonnet-4-5": Price(input=3.0, output=15.0),
    "openai:gpt-5.5": Price(input=1.25, output=10.0),
}


def require(binary: str) -> str:
    """The pinned CLI from node_modules/.bin (or PATH), or skip the test saying how to get it."""
    found = find_binary(binary, ROOT)
    if found is None:
        pytest.skip(f"{binary!r} CLI not installed: run .ci/install-agents.sh (npm, project-local)")
    return found


def agent_env(tmp_path: Path) -> dict[str, str]:
    """A parent environment with a tmp HOME, the agent's key and a task-model key that must
    never reach the agent process."""
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "LANG": "C.UTF-8",
        "FAPO_AGENT_KEY": AGENT_KEY,
        "OPENAI_API_KEY": TASK_KEY,
        "ANTHROPIC_API_KEY": TASK_KEY,
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def claude(tmp_path: Path, url: str, **overrides: object) -> ClaudeCodeAgent:
    settings = AgentSettings(
        **{
            "model": "claude-sonnet-4-5",
            "max_turns": 8,
            "timeout_s": 30,
            "base_url": url,
            "api_key_env": "FAPO_AGENT_KEY",
            "pass_env": ["CLAUDE_CODE_MAX_RETRIES"],
            **overrides,
        }
    )
    return ClaudeCodeAgent(settings, project_root=ROOT, prices=PRICES, env=agent_env(tmp_path))


def codex(tmp_path: Path, url: str, **overrides: object) -> CodexAgent:
    settings = AgentSettings(
        **{
            "model": "gpt-5.5",
            "max_turns": 8,
            "timeout_s": 30,
            "base_url": url + "/v1",
            "api_key_env": "FAPO_AGENT_KEY",
            **overrides,
        }
    )
    return CodexAgent(settings, project_root=ROOT, prices=PRICES, env=agent_env(tmp_path))


PROMPT = "Answer the question: {question}\n"


def workspace(tmp_path: Path) -> Path:
    """A propose workspace laid out as the engine does (see fapo.agents.base)."""
    ws = tmp_path / "proposal" / "workspace"
    (ws / "prompts").mkdir(parents=True)
    (ws / "context").mkdir()
    (ws / "prompts" / "answer.md").write_text(PROMPT)
    (ws / "BRIEF.md").write_text("# Brief\nMake answers shorter. Allowed: prompts/answer.md\n")
    (ws / "context" / "scorer.py").write_text("def score(example, prediction):\n    return 1.0\n")
    return ws


def processes_under(path: Path) -> list[int]:
    """Live processes whose working directory or command line mentions `path`."""
    hits = []
    needle = str(path)
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().decode(errors="replace").rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(needle) or needle in cmd):
            hits.append(int(pid))
    return hits

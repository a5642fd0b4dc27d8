"""Scripted loopback model servers for driving the real Claude Code and Codex CLIs in tests."""

from .script import (
    Dynamic,
    Error,
    Hang,
    Script,
    Text,
    Tool,
    add_file_patch,
    approve,
    json_answer,
    replace_file_patch,
    veto,
)
from .server import MockModelServer, Seen, tool_results_text

__all__ = [
    "Dynamic",
    "Error",
    "Hang",
    "MockModelServer",
    "Script",
    "Seen",
    "Text",
    "Tool",
    "add_file_patch",
    "approve",
    "json_answer",
    "replace_file_patch",
    "tool_results_text",
    "veto",
]

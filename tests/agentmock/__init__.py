"""Scripted loopback model servers for driving the real Claude Code and Codex CLIs in tests."""

from .script import (
    Error,
    Hang,
    Script,
    Text,
    Tool,
    add_file_patch,
    json_answer,
    replace_file_patch,
)
from .server import MockModelServer, Seen

__all__ = [
    "Error",
    "Hang",
    "MockModelServer",
    "Script",
    "Seen",
    "Text",
    "Tool",
    "add_file_patch",
    "json_answer",
    "replace_file_patch",
]

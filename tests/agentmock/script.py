"""What a scripted model answers, independent of the wire protocol.

A script is an ordered list of rules `(marker, steps)`. A request is routed to the first rule
whose marker occurs in the request's text (system prompt and messages), and answered with
step *k*, where *k* is the number of tool results the request already carries. That makes the
server stateless and retry-proof: a retried request gets the same answer as the first try.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tool:
    """A tool call. Anthropic: a `tool_use` block. Responses: `apply_patch` becomes a custom
    tool call whose input is the patch text; any other name a function call with JSON args."""

    name: str
    input: dict[str, Any] | str


@dataclass(frozen=True)
class Text:
    """A final assistant message."""

    text: str


@dataclass(frozen=True)
class Error:
    """An HTTP error answer (retryable for 5xx in both CLIs)."""

    status: int = 500
    message: str = "scripted server error"


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer (until the server stops or `seconds` pass)."""

    seconds: float = 3600.0


@dataclass(frozen=True)
class Dynamic:
    """A step computed from the request: `make(tool_results)` gets the text of every tool
    result the request carries (what the CLI read from its workspace) and returns the step.
    Lets a script write what the agent *saw*, e.g. a structure.yaml from the catalogue."""

    make: Any


Step = Tool | Text | Error | Hang | Dynamic


@dataclass
class Script:
    rules: list[tuple[str, list[Step]]] = field(default_factory=list)
    default: Step = field(default_factory=lambda: Text("ok"))
    #: Route by tool results too (off by default: file contents may echo markers).
    route_on_tool_results: bool = False

    def add(self, marker: str, *steps: Step) -> Script:
        self.rules.append((marker, list(steps)))
        return self

    def pick(self, text: str, tool_results: int) -> tuple[str | None, Step]:
        """The rule that matches `text` and its step for `tool_results` results so far."""
        for marker, steps in self.rules:
            if marker in text:
                if tool_results < len(steps):
                    return marker, steps[tool_results]
                return marker, Text("done")
        return None, self.default


def approve(*inspected: str, reason: str = "in scope, fixes the cluster") -> Text:
    """A valid approving review answer (fapo.agents.prompts.VERDICT_SHAPE)."""
    return json_answer(
        {"approve": True, "inspected": list(inspected) or ["context/diff.patch"],
         "findings": [], "reasons": [reason]}
    )  # fmt: skip


def veto(issue: str, file: str | None = None, *inspected: str) -> Text:
    """A valid veto: one `block` finding on `file`."""
    return json_answer(
        {"approve": False, "inspected": list(inspected) or ["context/diff.patch"],
         "findings": [{"severity": "block", "file": file, "issue": issue}], "reasons": [issue]}
    )  # fmt: skip


def json_answer(obj: Any) -> Text:
    """A final message carrying a JSON object, the way a well-behaved agent answers."""
    return Text("Here is my answer.\n```json\n" + json.dumps(obj) + "\n```")


def add_file_patch(path: str, content: str) -> str:
    """An apply_patch text that creates `path` (Codex's patch grammar)."""
    lines = "".join(f"+{line}\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"


def replace_file_patch(path: str, old: str, new: str) -> str:
    """An apply_patch text that rewrites `path` whose full text is `old` into `new`."""
    minus = "".join(f"-{line}\n" for line in old.splitlines())
    plus = "".join(f"+{line}\n" for line in new.splitlines())
    return f"*** Begin Patch\n*** Update File: {path}\n@@\n{minus}{plus}*** End Patch\n"

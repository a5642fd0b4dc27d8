"""What each agent role is told, and the JSON shapes its answers must have.

The rules ride along with every invocation (as an appended system prompt for Claude Code,
developer instructions for Codex) because each role runs with a fresh context. Answers are
parsed and validated here; a malformed answer is never trusted (the caller retries once with
the validation error, then records a failure).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fapo.agents.base import AttributionRequest, Cluster, Level, ReviewRequest, Role

# Markers open every prompt: they make the role visible in transcripts (and let test servers
# route a request to its script without parsing the rest).
ROLE_MARKER = "[fapo:role={role}]"
RETRY_MARKER = "[fapo:retry]"

SYSTEM_RULES = """\
You are an optimizing agent working for fapo, a tool that improves multi-step LLM pipelines.
The fapo engine decides everything: it reviews, evaluates and accepts or rejects your work in
code. Your job is only to diagnose or to propose, as your task says.
Rules you must follow:
- Work only inside the current working directory. Never read, write or list anything outside it.
- Never look for validation or test data, labels or scores beyond what the task gives you.
- Do not hard-code answers, special-case examples, or change how outputs are scored.
- Do not run commands or tools to reach the network.
- Keep to exactly the change (or answer) your task asks for."""

ROLE_RULES: dict[str, str] = {
    "propose": """\
- Edit only the files BRIEF.md lists as allowed; every other file is read-only context.
- Make one focused change for the failure the brief describes, not a rewrite.
- Keep every {placeholder} a prompt template already uses.""",
    "attribute": """\
- You are read-only: do not create, edit or delete any file.
- Group the failures by the step that caused them and the level that can fix them.""",
    "review": """\
- You are read-only: do not create, edit or delete any file.
- You review a change someone else proposed. Judge it independently; do not fix it.
- Veto it for leakage of evaluation data, hard-coded answers or special-cased examples,
  gaming the scorer, edits outside the scope rules, or more than one concern in one change.""",
}

ATTRIBUTION_SHAPE = """\
{"clusters": [{"step": "<one of the steps>", "cause": "<what goes wrong, one sentence>",
  "level": "<one of the permitted levels>", "confidence": <0.0 to 1.0>,
  "example_ids": ["<ids of the failures in this cluster>"],
  "suggested_fix": "<one sentence>"}]}"""

VERDICT_SHAPE = """\
{"approve": true or false, "reasons": ["<one reason per line, at least one>"]}"""


def system_rules(role: Role) -> str:
    return SYSTEM_RULES + "\n" + ROLE_RULES[role]


MAX_REQUEST_CHARS = 90_000  # the prompt travels as one argv entry (Linux caps it at 128 KiB)


def task_prompt(
    role: Role,
    retry_error: str | None = None,
    request_text: str | None = None,
    attempt: int | None = None,
) -> str:
    """The user message for one invocation. Attribute/review requests travel inline (the
    workspace stays exactly as the engine laid it out, so any change is the agent's); a
    retry carries the validation error of the previous answer."""
    head = ROLE_MARKER.format(role=role)
    if attempt is not None:
        head += f" [fapo:attempt={attempt}]"
    if role == "propose":
        body = (
            "Read BRIEF.md in the current directory (brief.json has the same content as data) "
            "and make the one change it asks for, editing only the files it lists as allowed. "
            "Files under context/ are read-only. When you are done, answer with a short "
            "rationale (2 to 5 sentences): what you changed and why it should fix the failures."
        )
    elif role == "attribute":
        body = (
            "The request below lists training-split failures that the engine's checks could "
            "not explain, with each step's output; the current directory may hold more context. "
            "Find what goes wrong. Answer with only this JSON object, nothing else:\n"
            + ATTRIBUTION_SHAPE
        )
    else:
        body = (
            "The request below holds a proposed change as a diff, the scope rules and the "
            "proposer's rationale; the current directory holds the changed files and read-only "
            "context. Decide whether the change may be evaluated. Answer with only this JSON "
            "object, nothing else:\n" + VERDICT_SHAPE
        )
    if retry_error:
        body = (
            f"{RETRY_MARKER} A previous answer to this task was rejected: {retry_error}\n"
            "Answer again, with only the JSON object in the required shape.\n\n" + body
        )
    if request_text:
        if len(request_text) > MAX_REQUEST_CHARS:
            cut = len(request_text) - MAX_REQUEST_CHARS
            request_text = request_text[:MAX_REQUEST_CHARS] + f"\n[... {cut} characters cut]\n"
        body += "\n\n" + request_text
    return f"{head} {body}"


def request_markdown(request: AttributionRequest | ReviewRequest) -> str:
    """The request in prose, as the agent reads it."""
    if isinstance(request, AttributionRequest):
        lines = [
            f"# Attribution request: {request.tenant}",
            "",
            f"Steps, in order: {', '.join(request.steps)}",
            f"Permitted levels: {', '.join(request.levels)}",
            "",
            f"## Unexplained training failures ({len(request.failures)})",
            "",
        ]
        for f in request.failures:
            lines += [
                "```json",
                json.dumps(f, indent=2, ensure_ascii=False, default=str),
                "```",
                "",
            ]
        return "\n".join(lines)
    lines = [
        f"# Review request: {request.tenant}",
        "",
        f"Level of the change: {request.level}",
        "",
        "## Scope rules",
        "",
        *[f"- {r}" for r in request.scope_rules],
        "",
        "## Proposer's rationale",
        "",
        request.rationale or "(none given)",
        "",
        "## Diff",
        "",
        "```diff",
        request.diff.rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(lines)


# -- answers ---------------------------------------------------------------------------------


class AnswerError(ValueError):
    """The agent's answer is unusable; the message says why, for the retry prompt."""


class _ClusterAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    step: str = Field(min_length=1)
    cause: str = Field(min_length=1)
    level: Level
    confidence: float = Field(ge=0.0, le=1.0)
    example_ids: list[str] = Field(min_length=1)
    suggested_fix: str = ""


class _AttributionAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    clusters: list[_ClusterAnswer]


class _VerdictAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    approve: bool
    reasons: list[str] = Field(min_length=1)


_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The JSON object in an answer: the whole text, else the last fenced block, else the span
    from the first `{` to the last `}`."""
    text = text.strip()
    candidates = [text, *reversed(_FENCE.findall(text))]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError:
            continue
    raise AnswerError("the answer holds no JSON object" if text else "the answer is empty")


def _pydantic_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _failure_ids(request: AttributionRequest) -> set[str]:
    ids = set()
    for f in request.failures:
        for key in ("id", "example_id"):
            if key in f:
                ids.add(str(f[key]))
                break
    return ids


def parse_attribution(text: str, request: AttributionRequest) -> list[Cluster]:
    """Validated clusters from an attribution answer, or AnswerError saying what is wrong."""
    try:
        answer = _AttributionAnswer.model_validate(extract_json(text))
    except ValidationError as exc:
        raise AnswerError(f"wrong shape: {_pydantic_error(exc)}") from None
    known = _failure_ids(request)
    clusters = []
    for i, c in enumerate(answer.clusters):
        if c.step not in request.steps:
            raise AnswerError(f"clusters.{i}.step: {c.step!r} is not one of {request.steps}")
        if c.level not in request.levels:
            raise AnswerError(f"clusters.{i}.level: {c.level!r} is not one of {request.levels}")
        unknown = [e for e in c.example_ids if known and e not in known]
        if unknown:
            raise AnswerError(f"clusters.{i}.example_ids: unknown ids {unknown[:5]}")
        clusters.append(Cluster(**c.model_dump(), source="agent"))
    return clusters


def parse_verdict(text: str) -> tuple[bool, list[str]]:
    """`(approve, reasons)` from a review answer, or AnswerError saying what is wrong."""
    try:
        answer = _VerdictAnswer.model_validate(extract_json(text))
    except ValidationError as exc:
        raise AnswerError(f"wrong shape: {_pydantic_error(exc)}") from None
    reasons = [r.strip() for r in answer.reasons if r.strip()]
    if not reasons:
        raise AnswerError("reasons: give at least one non-empty reason")
    return answer.approve, reasons

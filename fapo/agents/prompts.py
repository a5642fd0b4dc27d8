"""What each agent role is told, and the JSON shapes its answers must have.

The rules ride along with every invocation (as an appended system prompt for Claude Code,
developer instructions for Codex) because each role runs with a fresh context. Answers are
parsed and validated here; a malformed answer is never trusted (the caller retries once with
the validation error, then records a failure).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fapo.agents.base import (
    AttributionRequest,
    Cluster,
    Level,
    ReviewFinding,
    ReviewRequest,
    Role,
    Severity,
)

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
- Group the failures by the step that caused them and the level that can fix them.
- Confidence says how sure the traces make you: below 0.5 is a guess, and the optimizer works
  on a guess's level only after the failures attributed with more confidence.""",
    "review": """\
- You are read-only: do not create, edit or delete any file.
- You review a change someone else proposed. Judge it independently; do not fix it.
- Read the changed files, their parent versions under parent/ and the diff before you answer;
  name every file you read in "inspected".
- Checklist, one finding per problem, each with a severity:
  block: a changed file that is not in the allowed list; evaluation data or answers copied in;
         hard-coded answers or special-cased examples (ids, exact inputs); a change that games
         the scorer instead of fixing the failures; more than one concern in one change
         (one params.yaml key plus one prompt of the step that key feeds is one concern, a
         joint change: the checks in code bound both to that step before you see it).
  warn:  a change unlikely to fix the cluster it names; a prompt that may now break the
         expected output format; examples in a prompt that look copied from the traces.
- Approve only when no finding is a block; veto (approve false) when at least one is.""",
}

#: The three levels, as the attribution role is told them (and the propose brief's objective).
LEVEL_DEFINITIONS = {
    "prompt": "the step's instructions are the problem: rewording a prompt file can fix it "
    "(format, missing guidance, wrong emphasis) without changing what the step receives",
    "parameter": "a declared tunable (retrieval depth, temperature, a length limit) is set "
    "wrong: changing params.yaml within its bounds can fix it",
    "structure": "the step cannot succeed with what it receives however it is worded: the "
    "pipeline needs another step (a retrieval hop, a vote, a validate-and-retry, a "
    "post-processing function) declared in structure.yaml",
    "code": "only new chain code (chain.py) can fix it",
}

#: Task-generic prompt-writing techniques for the proposer (no demo's wording or domain).
TECHNIQUES = [
    "Format constraints: state the exact output shape (a bare answer, one line, a JSON key, "
    "a word limit) and what must not appear (explanations, quotes, labels).",
    "Synthetic few-shot: one to three short worked examples you write yourself from the "
    "task's description — never copied or paraphrased from a train row or trace; use made-up "
    "names and values.",
    "Negative examples: show one wrong output next to the right one and say why it is wrong.",
    "Decomposition: ask the step to work through named sub-steps (find the evidence, link it, "
    "then answer), keeping the final output in the required format.",
    "Grounding: tell the step to use only what it receives (passages, fields) and what to do "
    "when that is not enough.",
    "Emphasis and order: put the instruction the failures ignore first or last, stated once, "
    "plainly.",
    "At the parameter level change one value, in the direction the traces suggest (with one "
    "prompt of its step only as a joint change the brief lists); at the structure level add "
    "one transform from the catalogue.",
    "Plateau: when earlier attempts at this level gained nothing (see their val effect), do not "
    "resubmit a variant of the same idea; change the technique or the step you work on.",
]

#: Examples in a prompt must be invented: a copied train row teaches the step one answer
#: and, where train and sealed splits share phrasing, can carry sealed text.
SYNTHETIC_RULE = (
    "Examples you write into a prompt must be synthetic: invent them from the task's "
    "description; never copy or paraphrase a train row, trace or label."
)

#: Why a plateau matters: a variant of a rejected idea usually fails the same way.
PLATEAU_RULE = (
    "The last {n} attempts did not improve validation (see Earlier attempts). Do not submit "
    "another variant of the same idea: pick a different technique, a different step, or say "
    "in your rationale why this change differs."
)

ATTRIBUTION_SHAPE = """\
{"clusters": [{"step": "<one of the steps>", "cause": "<what goes wrong, one sentence>",
  "level": "<one of the permitted levels>", "confidence": <0.0 to 1.0>,
  "example_ids": ["<ids of the failures in this cluster>"],
  "suggested_fix": "<one sentence>"}]}"""

VERDICT_SHAPE = """\
{"approve": true or false,
 "inspected": ["<every workspace file you read>"],
 "findings": [{"severity": "block" or "warn", "file": "<path or null>",
   "issue": "<one sentence>"}],
 "reasons": ["<one summary line per reason, at least one>"]}"""


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
            "not explain, with each step's output; the current directory holds the chain's "
            "source, prompts, scorer, a few train rows and ATTRIBUTION.md. "
            "Find what goes wrong. Answer with only this JSON object, nothing else:\n"
            + ATTRIBUTION_SHAPE
        )
    else:
        body = (
            "The request below holds a proposed change as a diff, the files the proposer was "
            "allowed to change, the scope rules, the failure cluster it targets and the "
            "proposer's rationale; the current directory holds the changed files, the parent's "
            "versions under parent/ and read-only context. Decide whether the change may be "
            "evaluated. Answer with only this JSON object, nothing else:\n" + VERDICT_SHAPE
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
            "## The levels",
            "",
            *[f"- `{lv}`: {LEVEL_DEFINITIONS[lv]}" for lv in request.levels],
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
    c = request.cluster
    lines = [
        f"# Review request: {request.tenant}",
        "",
        f"Level of the change: {request.level}"
        + (f"; parent variant: {request.parent} (its files: parent/)" if request.parent else ""),
        "",
        "## Files the proposer was allowed to change",
        "",
        *([f"- `{f}`" for f in request.allowed_files] or ["- (none listed)"]),
        "",
        "## The failure cluster the change targets (the hypothesis)",
        "",
        (
            f"- step `{c.step}`, level {c.level}: {c.cause} ({len(c.example_ids)} train "
            f"examples); suggested fix: {c.suggested_fix or '(none)'}"
            if c
            else "- (no cluster: a general improvement)"
        ),
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


class _FindingAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    severity: Severity
    file: str | None = None
    issue: str = Field(min_length=1)


class _VerdictAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approve: bool = Field(strict=True)
    inspected: list[str] = Field(min_length=1)
    findings: list[_FindingAnswer] = Field(default_factory=list)
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


def parse_verdict(text: str) -> ReviewAnswer:
    """The typed review answer, or AnswerError saying what is wrong. Fail-closed: an unknown
    severity, no inspected file, an approval with a `block` finding or a veto without one is
    not an answer (retried once, then a veto)."""
    try:
        answer = _VerdictAnswer.model_validate(extract_json(text))
    except ValidationError as exc:
        raise AnswerError(f"wrong shape: {_pydantic_error(exc)}") from None
    reasons = [r.strip() for r in answer.reasons if r.strip()]
    if not reasons:
        raise AnswerError("reasons: give at least one non-empty reason")
    inspected = [f.strip() for f in answer.inspected if f.strip()]
    if not inspected:
        raise AnswerError("inspected: name the files you read")
    blocks = [f for f in answer.findings if f.severity is Severity.BLOCK]
    if answer.approve and blocks:
        raise AnswerError("approve is true but a finding has severity block; veto or downgrade")
    if not answer.approve and not blocks:
        raise AnswerError("a veto (approve false) needs at least one finding of severity block")
    findings = [ReviewFinding(**f.model_dump()) for f in answer.findings]
    return ReviewAnswer(answer.approve, reasons, inspected, findings)


@dataclass(frozen=True)
class ReviewAnswer:
    """A validated review answer."""

    approve: bool
    reasons: list[str]
    inspected: list[str]
    findings: list[ReviewFinding]

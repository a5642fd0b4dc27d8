"""The agent contract. The engine owns the loop; an agent only diagnoses, proposes and reviews.

An agent never decides anything: the engine diffs the workspace to learn what changed, reviews it
in code, evaluates it and applies the acceptance rule. Agent answers are validated, never trusted.

Workspace layout prepared by the engine for every invocation (see fapo.workspace):

    <workspace>/BRIEF.md        what to do, in prose (also brief.json)
    <workspace>/prompts/...     } the incumbent's mutable files for the level,
    <workspace>/params.yaml     } at their tenant-relative paths; only these may change
    <workspace>/context/...     read-only context (other tenant files, train traces, docs)

What each level adds (fapo.propose, fapo.catalogue): structure — `context/transforms.md` (the
transform catalogue generated from fapo/transforms.py), `context/chain.md` (steps, edges,
prompts with their variables) and the current `structure.yaml`; parameter — bounds and current
values in the brief; prompt — every prompt of the implicated steps with its variables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import Field

from fapo.records import (
    AgentUsage,
    Cluster,
    Invocation,
    Level,
    ProposalFailure,
    Record,
    Role,
    Severity,
)

__all__ = [
    "Agent",
    "AgentUsage",
    "AttributionAnswer",
    "AttributionRequest",
    "Brief",
    "Cluster",
    "Invocation",
    "Level",
    "Proposal",
    "ProposalFailure",
    "PromptInfo",
    "ReviewFinding",
    "ReviewRequest",
    "Role",
    "Severity",
    "Verdict",
]


class PromptInfo(Record):
    """One prompt file as the brief describes it: the variables the chain supplies to it and
    the steps whose model calls used it (read from the train traces)."""

    file: str
    variables: list[str]
    steps: list[str] = Field(default_factory=list)
    implicated: bool = False  # used by the step the cluster blames


class Brief(Record):
    """Everything the proposer is told. Built from train-split evidence only."""

    tenant: str
    level: Level
    objective: str
    scores: dict[str, float]  # aggregate only: e.g. {"train": .6, "val": .58}
    cluster: Cluster | None
    traces: list[dict[str, Any]]  # train examples of the cluster: steps, outputs, label, score
    allowed_files: list[str]  # tenant-relative paths the agent may edit (or create, for structure)
    param_bounds: dict[str, Any] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)  # earlier attempts + outcomes
    rules: list[str] = Field(default_factory=list)
    # briefs (issue 16): what each level's change needs
    steps: list[str] = Field(default_factory=list)  # the chain's steps, in graph order
    param_values: dict[str, Any] = Field(default_factory=dict)  # current params (parameter)
    # parameter level: key -> prompt files of the same step it may change together with (joint)
    joint: dict[str, list[str]] = Field(default_factory=dict)
    # parameter level: keys that only raise a built model's temperature (fapo/param_effects.py)
    sampling: list[str] = Field(default_factory=list)
    prompts: list[PromptInfo] = Field(default_factory=list)  # prompt/structure levels
    context_files: dict[str, str] = Field(default_factory=dict)  # context/ file -> what it is
    techniques: list[str] = Field(default_factory=list)
    plateau: str | None = None  # set when recent attempts gained nothing
    role: Role = "propose"  # "review": the reviewer's BRIEF.md
    structure: str | None = None  # structure level: the current structure.yaml

    def to_markdown(self) -> str:
        return brief_markdown(self)


class Proposal(Record):
    """The agent's account of its change. What changed is read from disk, not from here."""

    rationale: str = ""
    invocations: list[Invocation] = Field(default_factory=list)
    failure: str | None = None  # set when the agent could not produce a proposal
    failure_kind: ProposalFailure | None = None  # why; AGENT_ERROR when a failure names none

    @property
    def kind(self) -> ProposalFailure | None:
        if self.failure is None:
            return None
        return self.failure_kind or ProposalFailure.AGENT_ERROR


class AttributionRequest(Record):
    tenant: str
    steps: list[str]
    levels: list[Level]
    failures: list[dict[str, Any]]  # unexplained train traces


class AttributionAnswer(Record):
    clusters: list[Cluster] = Field(default_factory=list)
    invocations: list[Invocation] = Field(default_factory=list)
    failure: str | None = None


class ReviewRequest(Record):
    tenant: str
    level: Level
    diff: str
    scope_rules: list[str]
    rationale: str
    allowed_files: list[str] = Field(default_factory=list)  # what the proposer could change
    cluster: Cluster | None = None  # the failures the change is meant to fix
    parent: str = ""  # the incumbent's id; its files are under parent/ in the workspace


class ReviewFinding(Record):
    """One finding of the reviewing agent: how much it weighs, where, and what."""

    severity: Severity
    file: str | None = None
    issue: str


class Verdict(Record):
    approve: bool
    reasons: list[str] = Field(default_factory=list)
    invocations: list[Invocation] = Field(default_factory=list)
    failure: str | None = None  # the reviewer could not answer (counts as a veto)
    inspected: list[str] = Field(default_factory=list)  # files the reviewer says it read
    findings: list[ReviewFinding] = Field(default_factory=list)


@runtime_checkable
class Agent(Protocol):
    """Swap implementations by passing objects: builtin, scripted, claude-code, codex."""

    name: str

    def propose(self, brief: Brief, workspace: Path) -> Proposal: ...

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer: ...

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict: ...


#: A joint candidate (fapo/joint.py), as the parameter-level brief states it.
JOINT_RULE = (
    "A joint change: when a parameter and the prompt of the same step only help together "
    "(the prompt asks for more than the limit lets through, or the parameter only matters once "
    "the prompt asks for it), you may change one params.yaml key and one prompt listed for it "
    "below, in one proposal. Anything else (two keys, two prompts, a new prompt, a prompt of "
    "another step, a prompt alone) is refused by review. Change a prompt only if the parameter "
    "alone cannot fix the cluster."
)


def brief_markdown(brief: Brief) -> str:
    review = brief.role == "review"
    title = (
        f"# Review: a proposed {brief.level}-level change of tenant `{brief.tenant}`"
        if review
        else f"# Task: one scoped change at the {brief.level} level of tenant `{brief.tenant}`"
    )
    lines = [title, "", brief.objective, ""]
    if brief.scores:
        lines += [
            "## Scores (aggregate only)",
            *[f"- {k}: {v:.3f}" for k, v in brief.scores.items()],
        ]
        lines += [""]
    lines += [
        "## Files the proposer was allowed to change" if review else "## Files you may change",
        *[f"- `{f}`" for f in brief.allowed_files],
        "",
    ]
    if brief.steps:
        lines += ["## The chain's steps, in order", "", " → ".join(f"`{s}`" for s in brief.steps)]
        lines += [""]
    if brief.param_bounds:
        lines += [
            "## Parameters: bounds and current values",
            "",
            "| parameter | current | type | bounds | meaning |",
            "|---|---|---|---|---|",
        ]
        for name, b in brief.param_bounds.items():
            num = int if b.get("type") == "int" else float
            bounds = (
                f"{num(b.get('min'))} … {num(b.get('max'))}"
                if b.get("type") in ("int", "float")
                else ", ".join(map(str, b.get("choices") or ["true", "false"]))
            )
            current = json.dumps(brief.param_values.get(name))
            lines.append(
                f"| `{name}` | {current} | {b.get('type')} | {bounds} | {b.get('description', '')} |"
            )
        lines += ["", "Change `params.yaml`; keep every value inside its bounds.", ""]
        if brief.joint:
            lines += ["## Joint changes (a parameter and a prompt of the same step)", ""]
            lines += [JOINT_RULE, ""]
            for name, files in brief.joint.items():
                lines.append(f"- `{name}` with {', '.join(f'`{f}`' for f in files)}")
            lines += [""]
    if brief.structure is not None:
        lines += ["## The current structure.yaml", "", "```yaml", brief.structure.rstrip(), "```"]
        lines += ["", "The transforms you may add are in `context/transforms.md`.", ""]
    if brief.prompts:
        lines += ["## Prompts and the variables each receives", ""]
        for pi in brief.prompts:
            mark = " **(used by the step this cluster blames)**" if pi.implicated else ""
            steps = f"; used by step {', '.join(f'`{s}`' for s in pi.steps)}" if pi.steps else ""
            variables = ", ".join(f"{{{v}}}" for v in pi.variables) or "none"
            lines.append(f"- `{pi.file}`: receives {variables}{steps}{mark}")
        lines += [
            "",
            "A prompt may use only the variables it receives; write literal braces as `{{` `}}`.",
            "",
        ]
    if brief.context_files:
        lines += ["## Read-only context", ""]
        lines += [f"- `context/{f}`: {what}" for f, what in brief.context_files.items()]
        lines += [""]
    if brief.cluster:
        c = brief.cluster
        lines += [
            "## The failure cluster the change targets" if review else "## Failure cluster to fix",
            f"- step: `{c.step}`; cause: {c.cause}; level: {c.level}; confidence {c.confidence:.2f}",
            f"- {len(c.example_ids)} train examples; suggested fix: {c.suggested_fix}",
            "",
            *(
                []
                if review
                else ["Train traces of this cluster (with labels) are in `context/traces.json`."]
            ),
            "",
        ]
    if brief.history:
        lines += ["## Earlier attempts", ""]
        for h in brief.history:
            lines += _history_markdown(h)
    if brief.plateau:
        lines += ["## Plateau", "", brief.plateau, ""]
    if brief.techniques:
        lines += ["## Techniques to consider", "", *[f"- {t}" for t in brief.techniques], ""]
    rules_head = "## Scope rules the proposer had to follow" if review else "## Rules"
    lines += [rules_head, *[f"- {r}" for r in brief.rules], ""]
    return "\n".join(lines)


def _history_markdown(h: dict[str, Any]) -> list[str]:
    """One earlier attempt: what it tried, what happened, its diff and its effect on val."""
    head = f"### {h.get('variant')} ({h.get('level')}): {h.get('outcome')}"
    out = [head, ""]
    for key, label in (("cluster", "cluster"), ("rationale", "rationale"), ("reason", "why")):
        if h.get(key):
            out.append(f"- {label}: {h[key]}")
    effect = h.get("val_effect")
    if effect:
        out.append(
            f"- effect on validation examples vs. its incumbent: {effect['better']} better, "
            f"{effect['worse']} worse, {effect['unchanged']} unchanged (counts only)"
        )
    if h.get("diff"):
        out += ["", "```diff", str(h["diff"]).rstrip("\n"), "```"]
    return [*out, ""]

"""The agent contract. The engine owns the loop; an agent only diagnoses, proposes and reviews.

An agent never decides anything: the engine diffs the workspace to learn what changed, reviews it
in code, evaluates it and applies the acceptance rule. Agent answers are validated, never trusted.

Workspace layout prepared by the engine for every invocation (see fapo.workspace):

    <workspace>/BRIEF.md        what to do, in prose (also brief.json)
    <workspace>/prompts/...     } the incumbent's mutable files for the level,
    <workspace>/params.yaml     } at their tenant-relative paths; only these may change
    <workspace>/context/...     read-only context (other tenant files, train traces, docs)
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
    "ReviewRequest",
    "Role",
    "Verdict",
]


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


class Verdict(Record):
    approve: bool
    reasons: list[str] = Field(default_factory=list)
    invocations: list[Invocation] = Field(default_factory=list)
    failure: str | None = None  # the reviewer could not answer (counts as a veto)


@runtime_checkable
class Agent(Protocol):
    """Swap implementations by passing objects: builtin, scripted, claude-code, codex."""

    name: str

    def propose(self, brief: Brief, workspace: Path) -> Proposal: ...

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer: ...

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict: ...


def brief_markdown(brief: Brief) -> str:
    lines = [
        f"# Task: one scoped change at the {brief.level} level of tenant `{brief.tenant}`",
        "",
        brief.objective,
        "",
        "## Scores (aggregate only)",
        *[f"- {k}: {v:.3f}" for k, v in brief.scores.items()],
        "",
        "## Files you may change",
        *[f"- `{f}`" for f in brief.allowed_files],
        "",
    ]
    if brief.param_bounds:
        lines += [
            "## Parameter bounds",
            "```json",
            json.dumps(brief.param_bounds, indent=2),
            "```",
            "",
        ]
    if brief.cluster:
        c = brief.cluster
        lines += [
            "## Failure cluster to fix",
            f"- step: `{c.step}`; cause: {c.cause}; level: {c.level}; confidence {c.confidence:.2f}",
            f"- {len(c.example_ids)} train examples; suggested fix: {c.suggested_fix}",
            "",
            "Train traces of this cluster (with labels) are in `context/traces.json`.",
            "",
        ]
    if brief.history:
        lines += [
            "## Earlier attempts",
            *[f"- {json.dumps(h, default=str)}" for h in brief.history],
            "",
        ]
    lines += ["## Rules", *[f"- {r}" for r in brief.rules], ""]
    return "\n".join(lines)

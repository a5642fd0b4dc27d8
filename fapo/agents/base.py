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

from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Level = Literal["prompt", "parameter", "structure"]
Role = Literal["propose", "attribute", "review"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentUsage(_Record):
    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    duration_s: float = 0.0


class Invocation(_Record):
    """One run of an agent process (or of the built-in agent): what was asked and what happened."""

    agent: str
    role: Role
    command: list[str] = Field(default_factory=list)  # secrets redacted
    exit_code: int | None = None
    is_error: bool = False
    error: str | None = None
    timed_out: bool = False
    permission_denials: list[Any] = Field(default_factory=list)
    usage: AgentUsage = AgentUsage()
    transcript_file: str | None = None  # relative to the workspace's parent (proposal dir)
    final_text: str = ""


class Cluster(_Record):
    """A group of failures sharing a step, a cause and the level that can fix them."""

    step: str
    cause: str
    level: Level
    confidence: float = Field(ge=0.0, le=1.0)
    example_ids: list[str]
    suggested_fix: str = ""
    source: Literal["ladder", "agent", "intervention"] = "ladder"
    # What the interventions saw ("oracle at retrieve repaired 7/8 sampled failures", …).
    evidence: list[str] = Field(default_factory=list)
    # Declared parameters whose move repaired members (the parameter level's first candidates).
    parameters: list[str] = Field(default_factory=list)


class Brief(_Record):
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
        from fapo.workspace import brief_markdown

        return brief_markdown(self)


class Proposal(_Record):
    """The agent's account of its change. What changed is read from disk, not from here."""

    rationale: str = ""
    invocations: list[Invocation] = Field(default_factory=list)
    failure: str | None = None  # set when the agent could not produce a proposal


class AttributionRequest(_Record):
    tenant: str
    steps: list[str]
    levels: list[Level]
    failures: list[dict[str, Any]]  # unexplained train traces


class AttributionAnswer(_Record):
    clusters: list[Cluster] = Field(default_factory=list)
    invocations: list[Invocation] = Field(default_factory=list)
    failure: str | None = None


class ReviewRequest(_Record):
    tenant: str
    level: Level
    diff: str
    scope_rules: list[str]
    rationale: str


class Verdict(_Record):
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

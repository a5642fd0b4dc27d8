"""Immutable records crossing between the loop's stages, plus the dataset rows tenants use.

Every stage returns one record; `EventLog.memo` dumps it to `events.jsonl` and validates it back on
resume. Outcomes and failure kinds are enums, so control flow never matches a message string.
Depends on pydantic and the standard library only, so every fapo module can import it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Level = Literal["prompt", "parameter", "structure", "code"]
#: `code` (editing chain.py: arbitrary Python) is its own opt-in level, after the declarative
#: `structure` (structure.yaml transforms); docs/security.md says why.
LEVELS: tuple[Level, ...] = ("prompt", "parameter", "structure", "code")
Role = Literal["propose", "attribute", "review"]


# -- what tenants write ------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One dataset row. `label` is seen only by the scorer and checks, never by the chain."""

    id: str
    inputs: dict[str, Any]
    label: Any = None


@dataclass(frozen=True)
class Score:
    """What a scorer may return instead of a bare float: a value in [0, 1] and a breakdown."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


# -- the one strict base -----------------------------------------------------------------------


class Record(BaseModel):
    """Base of every fapo record and spec: unknown keys are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- agent accounting --------------------------------------------------------------------------


class UsageSource(StrEnum):
    """Where an invocation's token and USD figures come from (briefs: issue 16)."""

    REPORTED = "reported"  # the CLI's own final usage report
    PARTIAL = "partial"  # summed from the events seen before the process was stopped
    NONE = "none"  # nothing was reported (e.g. the process never reached the model)


class AgentUsage(Record):
    usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0
    duration_s: float = 0.0
    source: UsageSource = UsageSource.REPORTED


class Invocation(Record):
    """One run of an agent process (or of the built-in agent): what was asked and what happened."""

    agent: str
    role: Role
    command: list[str] = Field(default_factory=list)  # secrets redacted
    exit_code: int | None = None
    is_error: bool = False
    error: str | None = None
    timed_out: bool = False
    permission_denials: list[Any] = Field(default_factory=list)
    # Tool calls refused without a permission check (a tool not offered, a write the tool
    # itself refused, a failed command): `{tool_name, tool_input, error}` (briefs: issue 16).
    refused: list[Any] = Field(default_factory=list)
    usage: AgentUsage = AgentUsage()
    transcript_file: str | None = None  # relative to the workspace's parent (proposal dir)
    final_text: str = ""


class Severity(StrEnum):
    """How a finding weighs: `block` stops the candidate, `warn` is recorded only."""

    BLOCK = "block"
    WARN = "warn"


class FindingKind(StrEnum):
    """What an agent tried that was refused or denied, or what a reviewer found."""

    SEALED_READ = "sealed_read"  # tried to read validation/test data or run records
    OUTSIDE_READ = "outside_read"  # tried to read elsewhere outside its workspace
    OUTSIDE_WRITE = "outside_write"  # tried to write outside its workspace
    DENIED = "denied"  # any other permission denial
    REFUSED_TOOL = "refused_tool"  # called a tool that is not offered, or the tool refused
    READ_ONLY_EDIT = "read_only_edit"  # a read-only role tried to change its workspace
    REVIEW = "review"  # a finding of the reviewing agent


class Finding(Record):
    """One denial, refused attempt or review finding, as recorded in review.json, decision.json
    and the report."""

    kind: FindingKind
    severity: Severity
    role: Role
    agent: str
    detail: str
    file: str | None = None


def spend(invocations: list[Invocation] | tuple[Invocation, ...]) -> float:
    """USD spent by an agent's invocations."""
    return sum(i.usage.usd for i in invocations)


# -- evaluate ----------------------------------------------------------------------------------


class EvalRecord(Record):
    """What the event log keeps of one evaluation (the full summary is `summary.json`)."""

    mean: float
    n: int
    calls: int
    errors: int


# -- attribute ---------------------------------------------------------------------------------


class Cluster(Record):
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


class AgentAttribution(Record):
    """What the agent's `attribute` added for the failures the ladder left unexplained."""

    clusters: list[Cluster] = Field(default_factory=list)
    failure: str | None = None
    invocations: list[Invocation] = Field(default_factory=list)


class ProbeVerdict(Record):
    """What the interventions concluded for one probed failure."""

    step: str | None = None  # None: no intervention repaired it (the ladder's cluster stands)
    level: Level | None = None
    kind: str | None = None  # the intervention that repaired (fapo.interventions.Kind value)


class InterventionSummary(Record):
    """What attribution's interventions spent (their own meter, reported apart from the run's
    evaluations) and concluded per probed failure (`attribution.json` `interventions`)."""

    calls: int = 0
    failed_calls: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cap: int | None = None  # the call cap they ran under
    stopped: str = ""  # why they stopped early (cap, wall clock), if they did
    probed: int = 0
    verdicts: dict[str, ProbeVerdict] = Field(default_factory=dict)

    @property
    def unrepaired(self) -> int:
        """Probed failures no intervention repaired."""
        return sum(1 for v in self.verdicts.values() if v.step is None)


class Attribution(Record):
    """Failure clusters of one variant on one split, largest first (`attribution.json`)."""

    split: str
    examples: int
    failures: int
    clusters: list[Cluster]
    agent: AgentAttribution | None = None
    infrastructure: list[str] = Field(default_factory=list)  # model calls errored: never clusters
    interventions: InterventionSummary | None = None

    @property
    def dominant(self) -> Cluster | None:
        return self.clusters[0] if self.clusters else None

    @property
    def agent_usd(self) -> float:
        return spend(self.agent.invocations) if self.agent else 0.0

    def for_level(self, level: Level) -> Cluster | None:
        """The largest cluster of `level`, else the dominant one."""
        return next((c for c in self.clusters if c.level == level), self.dominant)


# -- propose -----------------------------------------------------------------------------------


class ProposalFailure(StrEnum):
    """Why an agent produced no candidate."""

    NOTHING_LEFT = "nothing_left"  # no untried move at this level
    NO_IMPROVEMENT = "no_improvement"  # moves exist, none improves train
    SCRIPT_EXHAUSTED = "script_exhausted"  # a scripted agent ran out of steps
    SEALED_READ = "sealed_read"  # the agent tried to read sealed (validation/test) data
    NO_CHANGE = "no_change"  # the agent ran but changed no file
    OUTSIDE_WRITE = "outside_write"  # the agent tried to write outside its workspace
    AGENT_ERROR = "agent_error"  # the agent process failed

    @property
    def exhausts_level(self) -> bool:
        """The agent has nothing more to offer at this level: escalate without waiting."""
        return self in (
            ProposalFailure.NOTHING_LEFT,
            ProposalFailure.NO_IMPROVEMENT,
            ProposalFailure.SCRIPT_EXHAUSTED,
        )

    @property
    def blocks(self) -> bool:
        """A protocol violation rather than an empty answer."""
        return self in (ProposalFailure.OUTSIDE_WRITE, ProposalFailure.SEALED_READ)


def legacy_failure_kind(message: str) -> ProposalFailure:
    """Kind of a failure recorded by fapo ≤0.1.0 as a bare message (read once, when resuming)."""
    if "outside the workspace" in message:
        return ProposalFailure.OUTSIDE_WRITE
    if message.startswith("nothing left"):
        return ProposalFailure.NOTHING_LEFT
    if message.startswith("script exhausted"):
        return ProposalFailure.SCRIPT_EXHAUSTED
    if message.startswith("no "):
        return ProposalFailure.NO_IMPROVEMENT
    if "changed no file" in message:
        return ProposalFailure.NO_CHANGE
    return ProposalFailure.AGENT_ERROR


class ProposalRecord(Record):
    """One proposal as the engine read it from disk (what changed), not as the agent told it."""

    variant: str
    parent: str
    level: Level
    cluster: Cluster | None
    changes: list[str]  # tenant-relative paths changed (deleted ones included)
    deleted: list[str]
    stray: list[str]  # non-mutable files the agent touched inside its workspace
    outside: list[str]  # files the agent wrote outside its workspace
    rationale: str
    # fapo/sandbox.py (docs/security.md); defaults keep older records readable
    reverted: list[str] = Field(default_factory=list)  # tenant/run files put back after it
    withheld: dict[str, str] = Field(default_factory=dict)  # context kept out: file -> why
    invalid: list[str] = Field(default_factory=list)  # changed files not valid UTF-8
    key_hits: list[str] = Field(default_factory=list)  # `file: $VAR` (values never recorded)
    findings: list[Finding] = Field(default_factory=list)  # denials and refused attempts
    failure: str | None = None
    failure_kind: ProposalFailure | None = None
    agent_usd: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("failure") and not data.get("failure_kind"):
            data = {**data, "failure_kind": legacy_failure_kind(data["failure"])}
        return data


# -- review ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One deterministic review check and why it failed (empty reason when it passed)."""

    name: str
    passed: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AgentVerdict(Record):
    """The reviewing agent's answer as the engine judged it (a failure or a write is a veto)."""

    approve: bool
    reasons: list[str] = Field(default_factory=list)
    invocations: list[Invocation] = Field(default_factory=list)
    inspected: list[str] = Field(default_factory=list)  # files the reviewer says it read
    findings: list[Finding] = Field(default_factory=list)  # per finding: severity, file, issue


class ReviewRecord(Record):
    """Every check with its reason, and the reviewer's veto if it was asked (`review.json`)."""

    blocked: bool
    checks: list[Check]
    agent_verdict: AgentVerdict | None = None
    findings: list[Finding] = Field(default_factory=list)  # the proposer's and reviewer's denials

    @property
    def agent_usd(self) -> float:
        return spend(self.agent_verdict.invocations) if self.agent_verdict else 0.0

    def reasons(self) -> list[str]:
        out = [c.reason for c in self.checks if not c.passed]
        if self.agent_verdict and not self.agent_verdict.approve:
            out += self.agent_verdict.reasons
        return out


# -- compare / decide --------------------------------------------------------------------------


class Status(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    INVALID = "invalid"  # never evaluated: no proposal, or blocked


class DecisionRecord(Record):
    """The outcome of one candidate (`decision.json`)."""

    variant: str
    status: Status
    reason: str
    incumbent: str | None = None
    stats: dict[str, Any] = Field(default_factory=dict)
    candidate_val: float | None = None
    incumbent_val: float | None = None
    findings: list[Finding] = Field(default_factory=list)  # denials and refused attempts

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED


# -- escalate ----------------------------------------------------------------------------------


class LevelChange(Record):
    """The escalation policy moved the level (recorded before the proposal it applies to)."""

    from_level: Level = Field(alias="from")
    to: Level
    why: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# -- stop --------------------------------------------------------------------------------------


class StopKind(StrEnum):
    TARGET_REACHED = "target_reached"
    BUDGET = "budget"
    NO_FAILURES = "no_failures"
    LEVELS_EXHAUSTED = "levels_exhausted"
    NO_HELP = "no_help"  # no move at any permitted level gained on train (fapo.stop.NothingHelps)
    CUSTOM = "custom"


class StopRecord(Record):
    """Why the loop ended, the incumbent it ended on and what it accepted."""

    reason: str
    kind: StopKind = StopKind.CUSTOM
    best: str = "v000"
    accepted: list[str] = Field(default_factory=list)


class Stop(Record):
    """A stop condition's answer: stop, with this kind and message."""

    kind: StopKind
    message: str


# -- the run's result --------------------------------------------------------------------------


class OptimizeResult(Record):
    """What `fapo.optimize` (and `fapo run`) returns: the best variant and its scores."""

    run_dir: Path
    status: str
    stop: StopRecord
    best: str
    val: dict[str, float]  # v000 and best: mean val score
    test: dict[str, float]  # v000 and best: mean sealed test score

    @property
    def stop_reason(self) -> str:
        return self.stop.reason

    @property
    def accepted(self) -> list[str]:
        return list(self.stop.accepted)

"""Propose / attribute / review through a headless agent CLI, and judge what it did from disk.

Agent CLIs are untrusted: they run model-chosen tools. Each run (fapo/agents/cli_invoke.py) is a
contained subprocess (fapo/agents/process.py) with a minimal environment and redacted transcripts
(fapo/agents/agent_env.py); what the agent wrote is judged from disk, never from its exit code,
and its answers are validated here, never trusted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from fapo.agents.agent_env import REDACTED as REDACTED  # re-exported (tests)
from fapo.agents.agent_env import redact as redact  # re-exported (tests)
from fapo.agents.base import (
    AttributionAnswer,
    AttributionRequest,
    Brief,
    Invocation,
    Proposal,
    ProposalFailure,
    ReviewRequest,
    Role,
    Verdict,
)
from fapo.agents.cli_invoke import CLIInvoker
from fapo.agents.process import find_binary as find_binary  # re-exported (tests/agentmock)
from fapo.agents.prompts import (
    AnswerError,
    ReviewAnswer,
    parse_attribution,
    parse_verdict,
    request_markdown,
    task_prompt,
)
from fapo.artifacts import snapshot
from fapo.sandbox import detect_outside_writes  # noqa: F401  (re-exported)
from fapo.settings import AgentSettings


def merged_settings(
    base: AgentSettings, *layers: Mapping[str, Any] | BaseModel | None
) -> AgentSettings:
    """`base` with every non-None field of each layer applied in order: fapo.toml, then the
    tenant's `agent:` block, then command-line flags. Unknown keys are ignored (e.g. `kind`)."""
    data = base.model_dump()
    for layer in layers:
        if layer is None:
            continue
        items = layer.model_dump() if isinstance(layer, BaseModel) else dict(layer)
        data.update({k: v for k, v in items.items() if k in data and v is not None})
    return AgentSettings(**data)


# -- what changed on disk --------------------------------------------------------------------


def changed_files(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Paths added, removed or modified between two snapshots."""
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


# -- the shared role flow ----------------------------------------------------------------------


def inspected_exist(answer: ReviewAnswer, workspace: Path) -> ReviewAnswer:
    """Fail-closed: every file a reviewer says it inspected is in its workspace (a reviewer
    naming files it could not have read has not reviewed the change)."""
    root = workspace.resolve()
    missing = [
        f
        for f in answer.inspected
        if not (root / f.removeprefix("./")).resolve().is_relative_to(root)
        or not (root / f.removeprefix("./")).exists()
    ]
    if missing:
        raise AnswerError(f"inspected: not in your working directory: {missing[:5]}")
    return answer


class CLIAgent(CLIInvoker):
    """Propose / attribute / review through a headless agent CLI (one run: `CLIInvoker.invoke`).
    Answers are validated here, never trusted."""

    # the Agent protocol -----------------------------------------------------------------------

    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        self._spent_in_call = 0.0
        before = snapshot(workspace)
        prompt = task_prompt("propose", attempt=len(brief.history) + 1)
        inv, parsed = self.invoke("propose", prompt, workspace)
        changed = changed_files(before, snapshot(workspace))
        outside = self.outside_write_attempts(parsed, workspace.resolve())
        failure, kind = None, None
        if inv.is_error:
            failure = f"{self.name} failed: {inv.error or 'error result'}"
            kind = ProposalFailure.AGENT_ERROR
        elif outside:
            failure = f"{self.name} tried to write outside the workspace: {'; '.join(outside[:5])}"
            kind = ProposalFailure.OUTSIDE_WRITE
        elif not changed:
            failure = f"{self.name} changed no file in the workspace"
            kind = ProposalFailure.NO_CHANGE
        return Proposal(
            rationale=inv.final_text.strip()[:4000],
            invocations=[inv],
            failure=failure,
            failure_kind=kind,
        )

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        invocations, result, failure = self._ask(
            "attribute", request, workspace, lambda text: parse_attribution(text, request)
        )
        return AttributionAnswer(clusters=result or [], invocations=invocations, failure=failure)

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        invocations, result, failure = self._ask(
            "review",
            request,
            workspace,
            lambda text: inspected_exist(parse_verdict(text), workspace),
        )
        if result is None:
            return Verdict(approve=False, reasons=[], invocations=invocations, failure=failure)
        return Verdict(
            approve=result.approve,
            reasons=result.reasons,
            invocations=invocations,
            inspected=result.inspected,
            findings=result.findings,
        )

    def _ask(
        self,
        role: Role,
        request: AttributionRequest | ReviewRequest,
        workspace: Path,
        parse: Callable[[str], Any],
    ) -> tuple[list[Invocation], Any, str | None]:
        """Run a read-only role; retry once with the validation error; never trust bad JSON."""
        self._spent_in_call = 0.0
        text = request_markdown(request)
        invocations: list[Invocation] = []
        problem: str | None = None
        for _attempt in range(2):
            before = snapshot(workspace)
            inv, _ = self.invoke(role, task_prompt(role, problem, text), workspace)
            changed = changed_files(before, snapshot(workspace))
            if inv.is_error:
                invocations.append(inv)
                return invocations, None, f"{self.name} {role} failed: {inv.error or 'error'}"
            if changed:
                invocations.append(inv.model_copy(update={"error": "changed the workspace"}))
                return (
                    invocations,
                    None,
                    f"the {role} agent changed files it may only read: {', '.join(changed[:10])}",
                )
            try:
                value = parse(inv.final_text)
            except AnswerError as exc:
                problem = str(exc)
                invocations.append(inv.model_copy(update={"error": f"invalid answer: {problem}"}))
                continue
            invocations.append(inv)
            return invocations, value, None
        return invocations, None, f"invalid {role} answer after one retry: {problem}"

    def ping(self, workspace: Path) -> Invocation:
        """A trivial read-only request (for `fapo doctor`): can this agent answer at all?"""
        inv, _ = self.invoke("review", "Reply with the single word OK.", workspace)
        return inv


class _BudgetView(Protocol):
    """What `bind_budget` reads of fapo.budget.Budget."""

    @property
    def usd(self) -> float: ...

    @property
    def spec(self) -> Any: ...


A = TypeVar("A")


def bind_budget(agent: A, budget: _BudgetView) -> A:
    """Let a CLI agent see what is left of the run's USD budget (`max_usd`), so no call starts
    once it is spent and Claude Code holds it within a call (`--max-budget-usd`). Other agents
    are returned unchanged. Idempotent."""
    if isinstance(agent, CLIAgent):

        def left() -> float | None:
            cap = budget.spec.max_usd
            return None if cap is None else float(cap) - budget.usd

        agent.usd_left = left
    return agent

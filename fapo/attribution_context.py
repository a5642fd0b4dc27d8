"""The attribution role's workspace: lays out the tenant for the agent before it attributes."""

from __future__ import annotations

from pathlib import Path

from fapo.agents.base import (
    Agent,
    AttributionAnswer,
    AttributionRequest,
    Brief,
    Proposal,
    ReviewRequest,
    Verdict,
)
from fapo.agents.prompts import LEVEL_DEFINITIONS
from fapo.tenant import Tenant
from fapo.workspace import LeakCheck, prepare_attribution


class AttributionContext:
    """`agent` whose attribute() first lays out the attribution workspace (chain source,
    prompts, scorer, train rows, each step's outputs, the levels: `prepare_attribution`);
    propose and review pass through. Lets the loop brief the attribution role without
    attribute.py knowing the tenant."""

    def __init__(self, agent: Agent, tenant: Tenant, leak_index: LeakCheck | None) -> None:
        self.agent, self.tenant, self.leak_index = agent, tenant, leak_index
        self.name = agent.name
        self.withheld: dict[str, str] = {}

    @property
    def contained(self) -> bool:
        return bool(getattr(self.agent, "contained", False))

    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        return self.agent.propose(brief, workspace)

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        return self.agent.review(request, workspace)

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        self.withheld = prepare_attribution(
            workspace,
            self.tenant,
            steps=list(request.steps),
            levels=list(request.levels),
            failures=list(request.failures),
            level_definitions=LEVEL_DEFINITIONS,
            leak_index=self.leak_index,
        )
        return self.agent.attribute(request, workspace)


def attribution_context(agent: Agent, tenant: Tenant, leak_index: LeakCheck | None) -> Agent:
    """See AttributionContext."""
    return AttributionContext(agent, tenant, leak_index)

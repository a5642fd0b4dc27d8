"""fapo: failure-attributed optimization of multi-step LLM pipelines.

The public API is exported lazily (PEP 562), so `import fapo` and `fapo --help` pull in neither
langgraph nor a model SDK until a name that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that owns it
_EXPORTS = {
    "optimize": "fapo.api",
    "evaluate": "fapo.api",
    "load": "fapo.api",
    "Example": "fapo.records",
    "Score": "fapo.records",
    "OptimizeResult": "fapo.records",
    "Attribution": "fapo.records",
    "Cluster": "fapo.records",
    "DecisionRecord": "fapo.records",
    "ProposalRecord": "fapo.records",
    "ReviewRecord": "fapo.records",
    "Status": "fapo.records",
    "Stop": "fapo.records",
    "StopKind": "fapo.records",
    "StopCondition": "fapo.stop",
    "LoopState": "fapo.stop",
    "AcceptanceRule": "fapo.compare",
    "Decision": "fapo.compare",
    "EscalationPolicy": "fapo.escalate",
    "Agent": "fapo.agents.base",
    "Callback": "fapo.observers",
    "Event": "fapo.observers",
    "EvalSummary": "fapo.evaluate",
    "Settings": "fapo.settings",
    "Tenant": "fapo.tenant",
}

__all__ = [
    "__version__",
    "check",
    "oracle",
    "AcceptanceRule",
    "Agent",
    "Attribution",
    "Callback",
    "Cluster",
    "Decision",
    "DecisionRecord",
    "EscalationPolicy",
    "EvalSummary",
    "Event",
    "Example",
    "LoopState",
    "OptimizeResult",
    "ProposalRecord",
    "ReviewRecord",
    "Score",
    "Settings",
    "Status",
    "Stop",
    "StopCondition",
    "StopKind",
    "Tenant",
    "evaluate",
    "load",
    "optimize",
]

if TYPE_CHECKING:
    from fapo.agents.base import Agent
    from fapo.api import evaluate, load, optimize
    from fapo.compare import AcceptanceRule, Decision
    from fapo.escalate import EscalationPolicy
    from fapo.evaluate import EvalSummary
    from fapo.observers import Callback, Event
    from fapo.records import (
        Attribution,
        Cluster,
        DecisionRecord,
        Example,
        OptimizeResult,
        ProposalRecord,
        ReviewRecord,
        Score,
        Status,
        Stop,
        StopKind,
    )
    from fapo.settings import Settings
    from fapo.stop import LoopState, StopCondition
    from fapo.tenant import Tenant


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fapo' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def check(step: str, *, cause: str, level: str = "parameter", confidence: float = 0.9) -> Any:
    """Decorator registering a tenant step check (see fapo.checks)."""
    from fapo.checks import check as _check

    return _check(step, cause=cause, level=level, confidence=confidence)


def oracle(step: str) -> Any:
    """Decorator registering a tenant step oracle: the correct update of `step` (see fapo.checks)."""
    from fapo.checks import oracle as _oracle

    return _oracle(step)

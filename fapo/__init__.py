"""fapo: failure-attributed optimization of multi-step LLM pipelines.

Kept import-light on purpose: `fapo --help` must not pull in langgraph or model SDKs.
"""

from __future__ import annotations

__version__ = "0.1.0"

from fapo.records import Example, Score  # noqa: E402  (light: stdlib + dataclasses only)

__all__ = ["Example", "Score", "__version__", "check", "oracle"]


def check(step: str, *, cause: str, level: str = "parameter", confidence: float = 0.9):
    """Decorator registering a tenant step check (see fapo.checks)."""
    from fapo.checks import check as _check

    return _check(step, cause=cause, level=level, confidence=confidence)


def oracle(step: str):
    """Decorator registering a tenant step oracle: the correct update of `step` (see fapo.checks)."""
    from fapo.checks import oracle as _oracle

    return _oracle(step)

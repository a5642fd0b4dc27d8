"""Small immutable records shared by every stage (kept dependency-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

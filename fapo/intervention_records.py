"""What an intervention did to one failing example (Trial) and what all of them concluded (Verdict).

Apart from fapo/interventions.py so that fapo/reroll.py, which settles trials for it, can read
them without importing the runner that calls it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from fapo.records import Level


class Kind(StrEnum):
    ORACLE = "oracle"
    RESAMPLE = "resample"
    PARAMETER = "parameter"
    REFERENCE = "reference"


class Trial(BaseModel):
    """One intervention on one example and what the final score did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    step: str  # where it intervened (parameter: the first step whose output changed)
    detail: str = ""  # "k=8", "3 draws", …
    repaired: bool
    score: float
    repairs: int = 0  # draws that repaired (resample), else 0/1
    tries: int = 1
    # The step's own checks (checks.py), failing on the recorded run, pass after the intervention
    # (in at least half of the draws): evidence at the step even when a later defect still
    # breaks the final answer.
    local: bool = False
    # Downstream sampling steps the intervention re-rolled: `repairs`/`tries` then count its
    # repairs across their draws, and `repaired` says it beat their own resample rate (reroll.py).
    rerolled: list[str] = []


class Verdict(BaseModel):
    """The earliest step an intervention repaired, and the level that intervention points to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    example_id: str
    step: str | None  # None: no intervention repaired this failure (the ladder keeps it)
    level: Level | None = None
    kind: Kind | None = None
    detail: str = ""
    trials: list[Trial]
    base_score: float = 0.0
    note: str = ""

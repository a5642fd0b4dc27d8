"""Step checks for attribution, using the scorer's verifiers on the `write` step's text.

- write / listed_constraints_followed: a non-count constraint failed although the text was not cut
  off (a cut-off text is caught earlier by the finish reason "length") -> the prompt does not
  insist on following every constraint (prompt).
- write / exact_counts_met: an "exactly N words / bullets" constraint failed -> no prompt fixes
  counting; add deterministic enforcement after writing (structure).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fapo import check

_spec = importlib.util.spec_from_file_location(
    "demo_instructions_verifiers", Path(__file__).with_name("scorer.py")
)
assert _spec and _spec.loader
_verifiers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_verifiers)

COUNTED = ("exact_words", "exact_bullets")


def _failed(example: Any, state: dict, counted: bool) -> bool:
    text = state.get("text") if isinstance(state.get("text"), str) else ""
    return any(
        not _verifiers.verify(c, text)
        for c in example.label["constraints"]
        if (c["kind"] in COUNTED) == counted
    )


@check(
    "write",
    cause="a listed constraint was ignored: the prompt does not insist that every "
    "constraint be followed",
    level="prompt",
    confidence=0.8,
)
def listed_constraints_followed(example: Any, state: dict) -> bool:
    return not _failed(example, state, counted=False)


@check(
    "write",
    cause="an exact word or bullet count was missed: no prompt makes the model count; "
    "enforce it with a deterministic step after writing",
    level="structure",
    confidence=0.9,
)
def exact_counts_met(example: Any, state: dict) -> bool:
    return not _failed(example, state, counted=True)

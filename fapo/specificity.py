"""Flag changes that encode a benchmark's verifier logic instead of improving the pipeline.

A tenant may declare `benchmark_specific:` in tenant.yaml — the identifiers of its benchmark's own
verifiers (instruction ids, checker names). A change whose *added* lines name one of them is
benchmark-specific repair (e.g. a post-processing node that enforces one instruction id the way
its verifier checks it); the report flags it so a user can tell it from a general improvement.
Matching is on whole identifiers, never on a tenant's wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict


class SpecificityFlag(BaseModel):
    """One variant whose change names declared benchmark identifiers."""

    model_config = ConfigDict(frozen=True)

    variant: str
    level: str
    terms: list[str]


def added_lines(diff: str) -> str:
    """The lines a unified diff adds (without the `+++` file headers)."""
    return "\n".join(
        line[1:]
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    )


def named_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The declared terms that occur in `text` as whole identifiers (not inside a longer one)."""
    found = []
    for term in dict.fromkeys(t for t in terms if t):
        if re.search(rf"(?<![\w:]){re.escape(term)}(?![\w:])", text):
            found.append(term)
    return found


def flag_variants(variants: Iterable[dict], terms: Iterable[str]) -> list[SpecificityFlag]:
    """Flags for report variants (`id`, `diff`, `proposal.level`) whose diff names a term."""
    terms = list(terms)
    if not terms:
        return []
    flags = []
    for v in variants:
        hit = named_terms(added_lines(v.get("diff") or ""), terms)
        if hit:
            level = (v.get("proposal") or {}).get("level", "?")
            flags.append(SpecificityFlag(variant=v["id"], level=level, terms=hit))
    return flags

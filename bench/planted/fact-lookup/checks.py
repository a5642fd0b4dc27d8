"""Step checks and oracles for attribution; they read the label (the registry entry and answer).

Levels are the tenant author's best guess from what a check can see, not the planted truth.
"""

from __future__ import annotations

import re
from typing import Any

from fapo import check

try:
    from fapo.checks import oracle
except ImportError:  # fapo.checks.oracle lands with the interventions work; until then, inert

    def oracle(step: str):  # type: ignore[no-redef]
        def deco(fn: Any) -> Any:
            fn.__fapo_oracle_step__ = step
            return fn

        return deco


def _ids(lines: Any) -> set[str]:
    return {m.group(1) for p in lines or [] if (m := re.match(r"\s*\[([^\]]+)\]", str(p)))}


@check("retrieve", cause="the registry entry was not retrieved", level="parameter", confidence=0.8)
def entry_retrieved(example: Any, state: dict) -> bool:
    return _ids([example.label["entry"]]) <= _ids(state.get("passages"))


@oracle("rewrite")
def full_name_query(example: Any, state: dict) -> dict | None:
    return {"query": example.label["query"]}


@oracle("retrieve")
def gold_entry(example: Any, state: dict) -> dict | None:
    return {"passages": [example.label["entry"]]}

"""Step checks and oracles for attribution; they read the label (founding years and passages).

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


@check("lookup", cause="a founding passage was not retrieved", level="parameter", confidence=0.8)
def founding_retrieved(example: Any, state: dict) -> bool:
    got = _ids(state.get("first_passages")) | _ids(state.get("second_passages"))
    return _ids([example.label["first_passage"], example.label["second_passage"]]) <= got


@check("year_first", cause="read the wrong year for the first organisation", level="prompt")
def first_year_right(example: Any, state: dict) -> bool:
    return state.get("first_year") == example.label["first_year"]


@check("year_second", cause="read the wrong year for the second organisation", level="prompt")
def second_year_right(example: Any, state: dict) -> bool:
    return state.get("second_year") == example.label["second_year"]


@oracle("lookup")
def gold_passages(example: Any, state: dict) -> dict | None:
    return {
        "first_passages": [example.label["first_passage"]],
        "second_passages": [example.label["second_passage"]],
    }


@oracle("year_first")
def gold_first_year(example: Any, state: dict) -> dict | None:
    year = example.label["first_year"]
    return {"first_reply": str(year), "first_year": year}


@oracle("year_second")
def gold_second_year(example: Any, state: dict) -> dict | None:
    year = example.label["second_year"]
    return {"second_reply": str(year), "second_year": year}

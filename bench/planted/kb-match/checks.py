"""Step checks and oracles for attribution; they read the label (the matching article).

Levels are the tenant author's best guess from what a check can see, not the planted truth.
"""

from __future__ import annotations

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


@check("retrieve", cause="the matching article was not retrieved", level="parameter")
def article_retrieved(example: Any, state: dict) -> bool:
    return example.label["article"] in (state.get("articles") or [])


@oracle("condense")
def report_query(example: Any, state: dict) -> dict | None:
    return {"query": example.label["query"]}


@oracle("retrieve")
def gold_article(example: Any, state: dict) -> dict | None:
    return {"articles": [example.label["article"]]}

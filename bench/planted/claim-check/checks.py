"""Step checks and oracles for attribution; they read the label (gold passage and sentence).

Levels are the tenant author's best guess from what a check can see, not the planted truth
(bench/planted/README.md): a missing sentence says the evidence step went wrong, not why.
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


@check("retrieve", cause="gold passage not among the top k", level="parameter", confidence=0.9)
def gold_passage_retrieved(example: Any, state: dict) -> bool:
    gold = example.label.get("passage")
    return not gold or _ids([gold]) <= _ids(state.get("passages"))


@check("evidence", cause="the evidence misses the sentence that decides the claim", level="prompt")
def gold_sentence_selected(example: Any, state: dict) -> bool:
    gold = example.label.get("sentence")
    return not gold or any(gold.split("] ", 1)[-1] in str(e) for e in state.get("evidence") or [])


@oracle("retrieve")
def gold_passages(example: Any, state: dict) -> dict | None:
    gold = example.label.get("passage")
    return {"passages": [gold]} if gold else None


@oracle("evidence")
def gold_evidence(example: Any, state: dict) -> dict | None:
    gold = example.label.get("sentence")
    return {"evidence": [gold]} if gold else None

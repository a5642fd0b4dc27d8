"""Step checks and oracles for attribution; they read the label (the sentence that decides the
section). Levels are the tenant author's best guess from what a check can see, not the planted truth.
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


@check("summarize", cause="the summary drops the sentence that decides the section", level="prompt")
def key_sentence_kept(example: Any, state: dict) -> bool:
    return example.label["key"] in state.get("summary", "")


@oracle("summarize")
def key_sentence(example: Any, state: dict) -> dict | None:
    return {"summary": example.label["key"]}

"""IFBench's official scoring: prompt-level strict accuracy is the score (1 when every instruction
of the prompt is followed by the strict test, else 0). Details carry the loose prompt-level
verdict and the per-instruction strict and loose verdicts, from which `fapo` summaries and
README.md derive instruction-level accuracy (followed instructions / all instructions)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from fapo import Example, Score

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ifbench_tenant_verifiers", _here / "verifiers.py")
assert _spec and _spec.loader
verifiers = sys.modules.get("ifbench_tenant_verifiers") or importlib.util.module_from_spec(_spec)
if "ifbench_tenant_verifiers" not in sys.modules:
    sys.modules["ifbench_tenant_verifiers"] = verifiers
    _spec.loader.exec_module(verifiers)


def score(example: Example, prediction: Any) -> Score:
    text = prediction if isinstance(prediction, str) else ""
    v = verifiers.check(example.id, example.inputs["prompt"], example.label, text)
    strict, loose = all(v["strict"]), all(v["loose"])
    return Score(
        1.0 if strict else 0.0,
        {
            "prompt_strict": strict,
            "prompt_loose": loose,
            "instructions": len(v["ids"]),
            "instructions_strict": sum(v["strict"]),
            "instructions_loose": sum(v["loose"]),
            "failed_strict": [i for i, ok in zip(v["ids"], v["strict"], strict=True) if not ok],
        },
    )

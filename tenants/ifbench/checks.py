"""Step checks naming the instruction that failed, by the official verifiers (strict test).

- check / critique_missed: the draft breaks an instruction but the critique approved it (OK), so
  nothing was revised -> the check prompt must look harder (prompt).
- revise / revision_breaks: after revision the response still breaks (or newly breaks) an
  instruction -> the revise prompt must fix what the critique lists, keeping the rest (prompt).

The cause names the first failing instruction id, so clusters group by instruction type.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

from fapo import check
from fapo.checks import CheckFailure

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ifbench_tenant_verifiers", _here / "verifiers.py")
assert _spec and _spec.loader
verifiers = sys.modules.get("ifbench_tenant_verifiers") or importlib.util.module_from_spec(_spec)
if "ifbench_tenant_verifiers" not in sys.modules:
    sys.modules["ifbench_tenant_verifiers"] = verifiers
    _spec.loader.exec_module(verifiers)

_OK = re.compile(r"^\s*ok\b", re.IGNORECASE)


def _failed(example: Any, text: Any) -> list[str]:
    text = text if isinstance(text, str) else ""
    v = verifiers.check(example.id, example.inputs["prompt"], example.label, text)
    return [i for i, ok in zip(v["ids"], v["strict"], strict=True) if not ok]


@check("check", cause="the critique approved a draft that breaks an instruction", level="prompt")
def critique_missed(example: Any, state: dict[str, Any]) -> Any:
    if not _OK.match(str(state.get("critique") or "")):
        return True
    failed = _failed(example, state.get("draft"))
    if not failed:
        return True
    return CheckFailure(f"the critique approved a draft that breaks {failed[0]}", "prompt", 0.8)


@check("revise", cause="the revised response breaks an instruction", level="prompt")
def revision_breaks(example: Any, state: dict[str, Any]) -> Any:
    if _OK.match(str(state.get("critique") or "")):
        return True  # nothing was revised: judged at the check step
    failed = _failed(example, state.get("response"))
    if not failed:
        return True
    return CheckFailure(f"the revised response still breaks {failed[0]}", "prompt", 0.7)

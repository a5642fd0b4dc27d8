"""The typed Python API: `fapo.optimize` on a loaded Tenant with a custom acceptance rule, stop
condition and callback; `import fapo` stays light; the event log validates what it replays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fapo
from fapo.compare import Decision
from fapo.errors import FapoError
from fapo.events import EventLog
from fapo.observers import Decided, EvalFinished, Event, RunFinished, RunStarted
from fapo.records import (
    DecisionRecord,
    OptimizeResult,
    ProposalFailure,
    ProposalRecord,
    Status,
    Stop,
    StopKind,
)
from fapo.stop import LoopState
from fapo.tenant import load_tenant


class AnyGain:
    """Accept any candidate whose mean beats the incumbent's (no significance test)."""

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, candidate: dict[str, float], incumbent: dict[str, float]) -> Decision:
        self.calls += 1
        gain = sum(candidate.values()) / len(candidate) - sum(incumbent.values()) / len(incumbent)
        return Decision(gain > 0, f"any-gain rule: {gain:+.3f}", {"gain": gain})


def first_acceptance(state: LoopState) -> Stop | None:
    if state.accepted:
        return Stop(kind=StopKind.CUSTOM, message=f"custom: {state.accepted[0]} accepted")
    return None


def test_optimize_on_a_tenant_object_with_custom_rule_stop_and_callback(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = load_tenant(project.tenants_dir / "demo-qa", project)
    monkeypatch.chdir(tmp_path / "tenants")  # no fapo.toml here: settings come from the call
    rule, seen = AnyGain(), []

    def callback(event: Event) -> None:
        seen.append(event)

    res = fapo.optimize(
        tenant,
        agent="builtin",
        acceptance=rule,
        stop=[first_acceptance],
        callbacks=[callback],
        settings=project,
        run_id="api",
        budget={"max_variants": 4},
        report=False,
    )
    assert isinstance(res, OptimizeResult)
    assert res.stop.kind is StopKind.CUSTOM and res.stop_reason == f"custom: {res.best} accepted"
    assert res.accepted == [res.best] and res.best != "v000"
    assert res.val[res.best] > res.val["v000"] and set(res.test) == {"v000", res.best}
    assert res.run_dir == project.runs_dir / "demo-qa" / "api"
    assert not (res.run_dir / "report.html").exists()  # report=False: no report writer
    assert isinstance(seen[0], RunStarted) and isinstance(seen[-1], RunFinished)
    decided = [e.decision for e in seen if isinstance(e, Decided)]
    assert decided and all(isinstance(d, DecisionRecord) for d in decided)
    assert decided[-1].status is Status.ACCEPTED and decided[-1].reason.startswith("any-gain")
    assert rule.calls == sum(d.status is not Status.INVALID for d in decided)
    assert all("calls" in e.budget for e in seen)
    assert {e.split for e in seen if isinstance(e, EvalFinished)} == {"train", "val", "test"}
    on_disk = json.loads((res.run_dir / "variants" / res.best / "decision.json").read_text())
    assert DecisionRecord.model_validate(on_disk) == decided[-1]


def test_import_fapo_and_its_api_names_loads_no_langgraph() -> None:
    code = (
        "import sys, fapo; fapo.optimize; fapo.evaluate; fapo.OptimizeResult; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langgraph', 'langchain_core', 'openai', 'anthropic')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    # …and the name really is the function that runs the loop once called.
    assert fapo.optimize.__module__ == "fapo.api"


def test_event_log_validates_on_replay_and_refuses_a_foreign_record(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    rec = DecisionRecord(variant="v001", status=Status.REJECTED, reason="r")
    assert log.memo("decision", "v001", DecisionRecord, lambda: rec) == (rec, False)
    again = EventLog(tmp_path / "events.jsonl")
    assert again.memo("decision", "v001", DecisionRecord, lambda: pytest.fail("rerun")) == (
        rec,
        True,
    )
    line = json.loads((tmp_path / "events.jsonl").read_text())
    assert line["data"]["status"] == "rejected"  # readable JSON, not a pickled object
    with pytest.raises(FapoError, match=r"not a valid ProposalRecord .*start a new run"):
        again.memo("decision", "v001", ProposalRecord, lambda: pytest.fail("rerun"))


def test_a_legacy_proposal_failure_message_resumes_with_its_kind() -> None:
    old = {
        "variant": "v002",
        "parent": "v000",
        "level": "prompt",
        "cluster": None,
        "changes": [],
        "deleted": [],
        "stray": [],
        "outside": [],
        "rationale": "",
        "failure": "nothing left to try at the prompt level",
        "agent_usd": 0.0,
    }
    prop = ProposalRecord.model_validate(old)
    assert prop.failure_kind is ProposalFailure.NOTHING_LEFT and prop.failure_kind.exhausts_level
    blocked = ProposalRecord.model_validate(
        {**old, "failure": "codex tried to write outside the workspace: /x"}
    )
    assert blocked.failure_kind is ProposalFailure.OUTSIDE_WRITE and blocked.failure_kind.blocks

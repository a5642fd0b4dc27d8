"""A tenant no change can help (label noise, n_train = 80) stops early with that reason, within
the P6 bound of 1,000 task-model calls; without gating the same run costs more than the bound."""

from __future__ import annotations

import json

import pytest
from nohelp_tenant import write

from fapo.loop import RunOptions, run
from fapo.racing import GATING_ENV
from fapo.records import Status, StopKind
from fapo.settings import load_settings

P6_CALLS = 1000


@pytest.mark.parametrize("gating", ["on", "off"])
def test_label_noise_stops_with_the_reason(tmp_path, monkeypatch, gating: str) -> None:
    monkeypatch.setenv(GATING_ENV, gating)
    write(tmp_path / "tenants")
    (tmp_path / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n'
    )
    res = run("nohelp", RunOptions(agent="builtin", run_id="p6"), load_settings(tmp_path))
    calls = json.loads((res.run_dir / "run.json").read_text())["spent"]["calls"]
    assert res.stop.kind is StopKind.NO_HELP, res.stop_reason
    assert res.stop_reason.startswith("nothing can help")
    for level in ("prompt", "parameter", "structure"):
        assert f"{level}: no {level} move improves" in res.stop_reason
    # the parameter level raced its single moves, then joint ones (max_tokens with a prompt move
    # of the step it feeds): the reason reports both races, as both were paid
    parameter = res.stop_reason.split("parameter: ", 1)[1]
    assert "; joint moves: " in parameter.split("structure: ", 1)[0]
    assert res.best == "v000" and res.accepted == []
    decisions = [
        json.loads(p.read_text()) for p in sorted(res.run_dir.glob("variants/v*/decision.json"))
    ]
    assert [d["status"] for d in decisions] == [Status.INVALID.value] * 3
    if gating == "on":
        assert calls <= P6_CALLS, calls
    else:  # the same decisions, paid by scoring every move on all 80 train examples
        assert calls > P6_CALLS, calls


def test_nothing_helps_needs_every_level_and_an_acceptance_resets_it() -> None:
    from fapo.records import DecisionRecord, ProposalFailure, ProposalRecord
    from fapo.stop import LoopState, NothingHelps, note_proposal

    def prop(level: str, kind: ProposalFailure | None) -> ProposalRecord:
        fail = None if kind is None else f"no {level} move improves the train score"
        return ProposalRecord(variant="v", parent="v000", level=level, cluster=None, changes=[], deleted=[], stray=[], outside=[], rationale="", failure=fail, failure_kind=kind)  # fmt: skip

    invalid = DecisionRecord(variant="v", status=Status.INVALID, reason="x")
    accepted = DecisionRecord(variant="v", status=Status.ACCEPTED, reason="x")
    cond, st = NothingHelps(("prompt", "parameter")), LoopState("v000", 0.0)
    note_proposal(st, "prompt", prop("prompt", ProposalFailure.NO_IMPROVEMENT), invalid)
    note_proposal(st, "parameter", prop("parameter", ProposalFailure.NOTHING_LEFT), invalid)
    assert cond(st) is None  # nothing left to try is not evidence that nothing helps
    note_proposal(st, "parameter", prop("parameter", ProposalFailure.NO_IMPROVEMENT), invalid)
    stop = cond(st)
    assert stop is not None and stop.kind is StopKind.NO_HELP
    note_proposal(st, "parameter", prop("parameter", None), accepted)
    assert cond(st) is None and st.barren == {}

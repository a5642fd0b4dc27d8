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
    assert res.best == "v000" and res.accepted == []
    decisions = [
        json.loads(p.read_text()) for p in sorted(res.run_dir.glob("variants/v*/decision.json"))
    ]
    assert [d["status"] for d in decisions] == [Status.INVALID.value] * 3
    if gating == "on":
        assert calls <= P6_CALLS, calls
    else:  # the same decisions, paid by scoring every move on all 80 train examples
        assert calls > P6_CALLS, calls

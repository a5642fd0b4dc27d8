"""Interventions on small tenants with one planted defect each (tests/attrib_tenants.py): the step
and level they find against the ladder's guess, their evidence, their cap, and their replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from attrib_tenants import make_tenant

from fapo.attribute import attribute
from fapo.cache import CallCache
from fapo.evaluate import evaluate
from fapo.interventions import InterventionRunner
from fapo.tenant import Tenant, load_tenant


def evaluated(tmp_path: Path, kind: str, **kw) -> tuple[Tenant, Path, CallCache]:
    tenant = load_tenant(make_tenant(tmp_path, kind, **kw))
    cache = CallCache(tmp_path / f"{tenant.root.name}.sqlite")
    out = tmp_path / f"eval-{tenant.root.name}"
    evaluate(tenant, "train", out_dir=out, cache=cache)
    return tenant, out / "results.jsonl", cache


def truth_share(report: dict, step: str, level: str) -> float:
    """Share of the failures attributed to (step, level)."""
    hit = sum(
        len(c["example_ids"])
        for c in report["clusters"]
        if c["step"] == step and c["level"] == level
    )
    return hit / max(report["failures"], 1)


def test_oracle_finds_the_upstream_defect_the_ladder_blames_downstream(tmp_path: Path) -> None:
    tenant, results, cache = evaluated(tmp_path, "upstream")
    ladder = attribute(tenant, results)
    assert ladder["failures"] == 16
    assert truth_share(ladder, "answer", "prompt") == 1.0  # the ladder's wrong guess
    report = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    assert truth_share(report, "extract", "prompt") == 1.0
    (cluster,) = report["clusters"]
    assert cluster["source"] == "intervention"
    assert "oracle at extract repaired 8/8 sampled failures" in cluster["evidence"]
    # the oracle at the final step repairs too, but the earliest repairing step wins
    assert "oracle at answer repaired 8/8 sampled failures" in cluster["evidence"]
    assert report["interventions"]["probed"] == 8


@pytest.mark.parametrize(("temp_param", "level"), [(False, "structure"), (True, "parameter")])
def test_noise_at_temperature_one_gets_the_noise_level(
    tmp_path: Path, temp_param: bool, level: str
) -> None:
    tenant, results, cache = evaluated(tmp_path, "noise", temp_param=temp_param)
    ladder = attribute(tenant, results)
    assert 0 < ladder["failures"] < 16
    assert truth_share(ladder, "answer", level) == 0.0  # the ladder never sees noise
    report = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    assert truth_share(report, "answer", level) == 1.0, report["clusters"]
    evidence = report["clusters"][0]["evidence"]
    assert any(e.startswith("resampling answer repaired") for e in evidence)
    if temp_param:
        assert report["clusters"][0]["parameters"] == ["temperature"]


def test_parameter_defect_without_checks_is_found_at_the_step_the_parameter_moves(
    tmp_path: Path,
) -> None:
    tenant, results, cache = evaluated(tmp_path, "depth", with_checks=False)
    assert truth_share(attribute(tenant, results), "answer", "prompt") == 1.0  # "unexplained"
    report = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    assert truth_share(report, "lookup", "parameter") == 1.0
    (cluster,) = report["clusters"]
    assert cluster["parameters"] == ["k"]
    assert "parameter k=8 repaired 8/8" in cluster["evidence"]


def test_without_checks_and_nothing_to_move_the_ladder_keeps_the_failure(tmp_path: Path) -> None:
    tenant, results, cache = evaluated(tmp_path, "upstream", with_checks=False)
    report = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    (cluster,) = report["clusters"]
    assert (cluster["step"], cluster["cause"], cluster["source"]) == (
        "answer",
        "unexplained",
        "ladder",
    )
    # both model steps ran at temperature 0: nothing to resample, so no call was spent
    assert report["interventions"]["calls"] == 0


def test_interventions_replay_from_the_cache_and_stop_at_their_cap(tmp_path: Path) -> None:
    tenant, results, cache = evaluated(tmp_path, "noise")
    first = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    assert first["interventions"]["calls"] > 0
    again = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    assert again["interventions"]["calls"] == 0
    assert again["clusters"] == first["clusters"]
    fresh = CallCache(tmp_path / "empty.sqlite")
    capped = attribute(
        tenant, results, interventions=InterventionRunner(tenant, cache=fresh, max_calls=3)
    )
    assert capped["interventions"]["calls"] <= 3
    assert "cap" in capped["interventions"]["stopped"]


def test_model_call_errors_are_infrastructure_never_clusters(tmp_path: Path) -> None:
    tenant, results, _ = evaluated(tmp_path, "upstream")
    recs = [json.loads(x) for x in results.read_text().splitlines()]
    recs[0]["steps"][0]["calls"][0]["error"] = "APIConnectionError: connection refused"
    results.write_text("".join(json.dumps(r) + "\n" for r in recs))
    report = attribute(tenant, results)
    assert report["infrastructure"] == [recs[0]["id"]]
    assert recs[0]["id"] not in {i for c in report["clusters"] for i in c["example_ids"]}
    assert report["failures"] == 16


def test_a_declared_reference_model_runs_the_step_alone(tmp_path: Path) -> None:
    root = make_tenant(tmp_path, "upstream")
    spec = (
        (root / "tenant.yaml")
        .read_text()
        .replace(
            "models: {task: 'sim:default'}", "models: {task: 'sim:default', reference: 'sim:ref'}"
        )
    )
    (root / "tenant.yaml").write_text(spec)
    tenant = load_tenant(root)
    cache = CallCache(tmp_path / "c.sqlite")
    evaluate(tenant, "train", out_dir=tmp_path / "ev", cache=cache)
    runner = InterventionRunner(tenant, cache=cache, sample=2)
    report = attribute(tenant, tmp_path / "ev" / "results.jsonl", interventions=runner)
    evidence = report["clusters"][0]["evidence"]
    # the simulator under another name behaves the same: the reference repairs nothing, and the
    # oracle still places the defect at extract
    assert "the reference model at extract repaired 0/2" in evidence
    assert "the reference model at answer repaired 0/2" in evidence
    assert truth_share(report, "extract", "prompt") == 1.0

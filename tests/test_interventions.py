"""Interventions on small tenants with one planted defect each (tests/attrib_tenants.py): the step
and level they find against the ladder's guess, their evidence, their cap, and their replay."""

from __future__ import annotations

import json
import shutil
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


def _demo_qa(tmp_path: Path) -> tuple[Tenant, list, CallCache]:
    """demo-qa (a max_tokens parameter; answers stop well below it) and its failing examples."""
    root = Path(__file__).resolve().parents[1] / "tenants" / "demo-qa"
    shutil.copytree(root, tmp_path / "demo-qa", ignore=shutil.ignore_patterns("__pycache__"))
    tenant = load_tenant(tmp_path / "demo-qa")
    cache = CallCache(tmp_path / "c.sqlite")
    out = tmp_path / "ev"
    evaluate(tenant, "train", out_dir=out, cache=cache)
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    by_id = {ex.id: ex for ex in tenant.examples("train")}
    return tenant, [by_id[r["id"]] for r in rows if r["score"] < 1][:3], cache


def test_a_token_limit_no_call_reached_is_not_rerun_and_the_verdict_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, failing, cache = _demo_qa(tmp_path)
    steps = {"answer": 0.0}
    fast = InterventionRunner(tenant, cache=cache, concurrency=1)
    got = fast.probe_many(failing, steps)
    # the same probes with every parameter move run (a cache of their own: nothing replays)
    monkeypatch.setattr(InterventionRunner, "_token_limit", lambda self, key, name: None)
    full = InterventionRunner(tenant, cache=CallCache(tmp_path / "full.sqlite"), concurrency=1)
    want = full.probe_many(failing, steps)
    assert got == want  # every trial, score and verdict alike
    details = {t.detail for v in got.values() for t in v.trials}
    assert {"max_tokens=264", "max_tokens=512"} <= details  # recorded, not dropped
    # the raised limits (and 16, above every short answer) were not run: fewer calls
    assert fast.meter.calls < full.meter.calls - len(failing)


def test_a_parameter_read_while_the_chain_runs_is_always_rerun(tmp_path: Path) -> None:
    tenant, failing, cache = _demo_qa(tmp_path)
    runner = InterventionRunner(tenant, cache=cache, concurrency=1)
    runner.probe_many(failing[:1], {"answer": 0.0})
    assert runner._token_limit("param:max_tokens=512", "max_tokens") == 512
    assert runner._token_limit("param:k=8", "k") is None  # k moves no model setting
    runner._read_at_run.add("max_tokens")
    assert runner._token_limit("param:max_tokens=512", "max_tokens") is None


def test_the_wall_clock_stops_interventions_and_charges_the_run(tmp_path: Path) -> None:
    from fapo.errors import BudgetExhausted
    from fapo.llm import Meter

    tenant, results, cache = evaluated(tmp_path, "noise")
    reference = attribute(tenant, results, interventions=InterventionRunner(tenant, cache=cache))
    ticks = [0]

    def clock() -> None:
        ticks[0] += 1
        if ticks[0] > 6:
            raise BudgetExhausted("wall-clock budget spent (1 min)")

    fresh = CallCache(tmp_path / "fresh.sqlite")
    parent = Meter()
    runner = InterventionRunner(tenant, cache=fresh, clock=clock, parent=parent)
    with pytest.raises(BudgetExhausted, match="wall-clock"):
        attribute(tenant, results, interventions=runner)
    assert 0 < runner.meter.calls == parent.calls  # the run is charged for what was spent
    assert runner.stopped == "wall-clock budget spent"
    # a resume attributes again: what was paid replays from the cache, the result is the same
    again = InterventionRunner(tenant, cache=fresh)
    report = attribute(tenant, results, interventions=again)
    assert report["clusters"] == reference["clusters"]
    assert again.meter.cache_hits >= runner.meter.calls


def test_a_wall_clock_stop_inside_attribution_resumes_to_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """demo-qa, built-in agent, a fake clock (one second per clock reading): the deadline falls
    inside v000's attribution (after the baseline, before any attribution is recorded); the
    resumed run reaches the uninterrupted run's result and pays no call twice."""
    from fapo.loop import Run
    from fapo.records import StopKind
    from fapo.run_setup import RunOptions
    from fapo.settings import load_settings

    def run(root: Path, budget: dict, resume: bool = False) -> tuple[Run, object]:
        if not (root / "tenants").exists():
            (root / "tenants").mkdir(parents=True)
            src = Path(__file__).resolve().parents[1] / "tenants" / "demo-qa"
            shutil.copytree(src, root / "tenants" / "demo-qa", ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
            (root / "fapo.toml").write_text(
                '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n'
            )
        t = load_tenant("demo-qa", load_settings(root))
        opts = RunOptions(agent="builtin", run_id="r", resume=resume, budget=budget, concurrency=1)  # fmt: skip
        r = Run(t, opts, report=False)
        ticks = [0.0]

        def clock() -> float:
            ticks[0] += 1
            return ticks[0]

        r.budget.use_clock(clock)
        return r, r.execute()

    def spent(root: Path) -> dict:
        info = json.loads((root / "runs/demo-qa/r/run.json").read_text())
        return {k: info[k] for k in ("best", "val", "test", "accepted")} | {"calls": info["spent"]["calls"]}  # fmt: skip

    ref = tmp_path / "ref"
    run(ref, {})
    root = tmp_path / "stopped"
    r, res = run(root, {"max_minutes": 3.0})
    assert res.stop.kind is StopKind.BUDGET and "wall-clock" in res.stop_reason
    kinds = [json.loads(x)["kind"] for x in (root / "runs/demo-qa/r/events.jsonl").read_text().splitlines()]  # fmt: skip
    assert (
        "attribution" not in kinds and kinds.count("eval") >= 3
    )  # baseline + test, no attribution
    assert r.meter.calls > 80 + 40  # baseline and test, plus the interrupted interventions' calls
    run(root, {"max_minutes": 100_000}, resume=True)
    assert spent(root) == spent(ref)  # same result, and no call paid twice

"""Sampling variants are compared on repeated draws: the number of repeats follows from the
recorded call settings (never from scores), and the loop evaluates both variants with it."""

from __future__ import annotations

import json
from pathlib import Path

from attrib_tenants import make_tenant
from test_builtin_moves import project

from fapo import noise
from fapo.loop import RunOptions, run


def _results(path: Path, temperature: float | None) -> Path:
    call = {"prompt": "p", "output": "o", "settings": {"temperature": temperature}}
    rec = {"id": "e1", "score": 1.0, "steps": [{"step": "a", "calls": [call]}]}
    path.write_text(json.dumps(rec) + "\n", encoding="utf-8")
    return path


def test_repeats_only_when_a_compared_variant_samples(tmp_path: Path) -> None:
    cold = _results(tmp_path / "cold.jsonl", 0.0)
    hot = _results(tmp_path / "hot.jsonl", 0.7)
    default = _results(tmp_path / "default.jsonl", None)
    assert noise.comparison_repeats(1, [cold, default]) is None
    assert noise.comparison_repeats(1, [cold, hot]) == noise.NOISY_REPEATS
    # a tenant that already asks for enough repeats keeps its own evaluation
    assert noise.comparison_repeats(noise.NOISY_REPEATS, [hot]) is None
    assert noise.comparison_repeats(1, [tmp_path / "missing.jsonl"]) is None


def _eval_keys(run_dir: Path) -> list[str]:
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e["key"] for e in events if e["kind"] == "eval"]


def test_the_loop_compares_sampling_variants_on_repeated_draws(tmp_path: Path) -> None:
    settings = project(tmp_path)
    hot = make_tenant(settings.tenants_dir, "noise", temp_param=True, with_checks=False)
    res = run(hot, RunOptions(agent="builtin", run_id="hot"), settings)
    keys = _eval_keys(res.run_dir)
    r = f"val-r{noise.NOISY_REPEATS}"
    assert f"v000/{r}" in keys and f"v001/{r}" in keys
    decision = json.loads((res.run_dir / "variants" / "v001" / "decision.json").read_text())
    # the decision was taken on the repeated draws: the incumbent's mean over 3 draws per example
    summary = json.loads((res.run_dir / "variants" / "v000" / "eval" / r / "summary.json").read_text())  # fmt: skip
    assert summary["repeats"] == noise.NOISY_REPEATS
    assert abs(decision["stats"]["incumbent_mean"] - summary["mean"]) < 1e-9


def test_a_deterministic_run_is_compared_once(tmp_path: Path) -> None:
    settings = project(tmp_path)
    cold = make_tenant(settings.tenants_dir, "depth", with_checks=False)
    res = run(cold, RunOptions(agent="builtin", run_id="cold"), settings)
    assert res.accepted
    assert not [k for k in _eval_keys(res.run_dir) if "-r" in k]

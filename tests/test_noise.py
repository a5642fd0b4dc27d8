"""Sampling variants are compared on repeated draws: the number of repeats follows from the
recorded call settings (never from scores), and the loop evaluates both variants with it."""

from __future__ import annotations

import json
from pathlib import Path

from attrib_tenants import make_tenant
from noisy_demo import fixed_files_at
from test_acceptance import _ceiling
from test_builtin_moves import project as scratch_project

from fapo import noise
from fapo.compare import PairedImprovement
from fapo.evaluate import evaluate
from fapo.loop import RunOptions, run
from fapo.spec import AcceptanceSpec
from fapo.tenant import load_tenant


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
    assert noise.comparison_repeats(1, [cold, hot]) == noise.COMPARISON_REPEATS
    # a tenant that asks for more repeats gets them
    assert noise.comparison_repeats(9, [hot]) == 9
    assert noise.comparison_repeats(1, [tmp_path / "missing.jsonl"]) is None


def _eval_keys(run_dir: Path) -> list[str]:
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    return [e["key"] for e in events if e["kind"] == "eval"]


def test_the_loop_compares_sampling_variants_on_repeated_draws(tmp_path: Path) -> None:
    settings = scratch_project(tmp_path)
    hot = make_tenant(settings.tenants_dir, "noise", temp_param=True, with_checks=False)
    # two candidates at most: the run-level control then tests the first at 0.05/2, which the
    # draws can reach on this small split (at the default 0.05/12 they need more examples)
    res = run(hot, RunOptions(agent="builtin", run_id="hot", budget={"max_variants": 2}), settings)
    keys = _eval_keys(res.run_dir)
    r = f"val-r{noise.COMPARISON_REPEATS}"
    # the candidate's first look tells that it samples; its looks then run on the draws
    assert f"v000/{r}" in keys and f"v001/look1/{r}" in keys
    decision = json.loads((res.run_dir / "variants" / "v001" / "decision.json").read_text())
    # the decision was taken on the repeated draws, draw by draw
    summary = json.loads((res.run_dir / "variants" / "v000" / "eval" / r / "summary.json").read_text())  # fmt: skip
    assert summary["repeats"] == noise.COMPARISON_REPEATS
    assert decision["stats"]["n_total"] == summary["n"] * noise.COMPARISON_REPEATS
    # and it is accepted: temperature 0 removes the noise (one draw per example: p = 0.12)
    assert decision["status"] == "accepted", decision["reason"]
    assert res.val[res.best] == 1.0


def test_a_deterministic_run_is_compared_once(tmp_path: Path) -> None:
    settings = scratch_project(tmp_path)
    cold = make_tenant(settings.tenants_dir, "depth", with_checks=False)
    res = run(cold, RunOptions(agent="builtin", run_id="cold"), settings)
    assert res.accepted
    assert not [k for k in _eval_keys(res.run_dir) if "-r" in k]


def test_draw_level_comparison_holds_alpha_in_an_aa_test(project, tmp_path: Path) -> None:
    """A/A on draws: candidate and incumbent differ only by a sentence the simulator ignores, at
    temperature 0.8, each evaluated on COMPARISON_REPEATS draws per example with independent
    seeds per draw; compared draw by draw, they are accepted at most at rate alpha."""
    t = load_tenant("demo-qa", project)
    files = fixed_files_at(t, 0.8)
    spec = AcceptanceSpec(min_improvement=0.0, alpha=0.05, resamples=1000)
    trials, accepted, nonzero = 20, 0, 0
    for i in range(trials):
        pair = []
        for side in ("a", "b"):
            prompt = files["prompts/answer.md"] + f"\n(Reference {i}{side}.)\n"
            v = t.variant({**files, "prompts/answer.md": prompt})
            out = tmp_path / f"{i}{side}"
            reps = noise.COMPARISON_REPEATS
            s = evaluate(v, "val", use_cache=False, repeats=reps, out_dir=out, limit=16)
            pair.append(noise.on_draws(s, out / "results.jsonl").scores)
        assert len(pair[0]) == noise.COMPARISON_REPEATS * 16
        nonzero += sum(pair[0][k] != pair[1][k] for k in pair[0])
        accepted += PairedImprovement(spec, seed=i).decide(pair[1], pair[0]).accepted
    assert nonzero > trials * 2, "the simulator at temperature 0.8 should differ draw by draw"
    assert accepted <= _ceiling(trials, spec.alpha), accepted

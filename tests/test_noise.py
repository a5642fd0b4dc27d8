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
    # the candidate's first look tells that it samples; its looks then run on the draws, and
    # the incumbent's draws are evaluated look by look too, never its whole val up front
    assert f"v001/look1/{r}" in keys and f"v000/look1/{r}" in keys and f"v000/{r}" not in keys
    decision = json.loads((res.run_dir / "variants" / "v001" / "decision.json").read_text())
    n_val = json.loads((res.run_dir / "variants" / "v000" / "eval" / "val" / "summary.json").read_text())["n"]  # fmt: skip
    # the decision was taken on the repeated draws, draw by draw
    assert decision["stats"]["n_total"] == n_val * noise.COMPARISON_REPEATS
    # each look evaluated exactly the draws it added, on both sides (the same draws)
    looks = len(decision["stats"]["looks"])
    for side in ("v000", "v001"):
        drawn = []
        for k in range(1, looks + 1):
            lines = (res.run_dir / "variants" / side / "eval" / f"{r}-look{k}" / "results.jsonl").read_text().splitlines()  # fmt: skip
            drawn += [(x["id"], x["repeat"]) for x in map(json.loads, lines)]
        assert len(drawn) == len(set(drawn)) == decision["stats"]["n"], side
        assert {rep for _, rep in drawn} == set(range(noise.COMPARISON_REPEATS))
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


def test_an_evaluation_of_some_draws_pays_for_those_and_scores_them_as_in_a_full_one(
    project, tmp_path: Path
) -> None:
    """`draws=` evaluates exactly the (id, repeat) pairs asked for, and each draw scores what it
    scores in the evaluation of every draw (a draw's calls carry its repeat), so a look of draws
    can stand in for the full evaluation of those draws."""
    t = load_tenant("demo-qa", project)
    v = t.variant(fixed_files_at(t, 0.8))
    reps = noise.COMPARISON_REPEATS
    full = evaluate(v, "val", use_cache=False, repeats=reps, out_dir=tmp_path / "full", limit=12)
    every = noise.on_draws(full, tmp_path / "full" / "results.jsonl").scores
    ids = sorted({k.rsplit("#", 1)[0] for k in every})
    pairs = [(i, (n * 3) % reps) for n, i in enumerate(ids[:8])] + [(ids[0], reps - 1)]
    part = evaluate(v, "val", use_cache=False, repeats=reps, out_dir=tmp_path / "part", ids={i for i, _ in pairs}, draws=pairs)  # fmt: skip
    got = noise.on_draws(part, tmp_path / "part" / "results.jsonl").scores
    assert sorted(got) == sorted(f"{i}#{r}" for i, r in pairs)
    assert {k: every[k] for k in got} == got
    assert len({every[k] for k in every}) > 1  # the draws do differ: the check can fail
    assert 0 < part.calls < full.calls * len(pairs) / len(every) * 1.5


def test_a_look_asked_for_draws_it_did_not_record_evaluates_them_under_its_own_key(
    tmp_path: Path,
) -> None:
    """The incumbent's look k replays the look it had as a candidate; should it be asked for
    other draws (a safeguard: the plan depends only on the val ids and the seed), the missing
    draws are evaluated under a key of their own, and the recorded look is left as it was."""
    from fapo import sequential as seq
    from fapo.loop import Run

    settings = scratch_project(tmp_path)
    hot = make_tenant(settings.tenants_dir, "noise", temp_param=True, with_checks=False)
    res = run(hot, RunOptions(agent="builtin", run_id="hot", budget={"max_variants": 1}), settings)
    r = noise.COMPARISON_REPEATS
    look1 = (res.run_dir / "variants" / "v000" / "eval" / f"val-r{r}-look1" / "results.jsonl").read_text()  # fmt: skip
    seen = {f"{x['id']}#{x['repeat']}" for x in map(json.loads, look1.splitlines())}
    ids = sorted({k.rsplit("#", 1)[0] for k in seen})
    other = [f"{i}#{k}" for i in ids for k in range(r) if f"{i}#{k}" not in seen][:3]
    assert len(other) == 3
    again = Run(load_tenant(hot, settings), RunOptions(agent="builtin", run_id="hot", resume=True))
    got = seq.eval_look(again, "v000", 1, [*sorted(seen)[:2], *other], draws=r)
    assert sorted(got) == sorted([*sorted(seen)[:2], *other])
    keys = _eval_keys(res.run_dir)
    assert any(k.startswith(f"v000/look1/val-r{r}/") for k in keys)  # the safeguard's own key
    after = (res.run_dir / "variants" / "v000" / "eval" / f"val-r{r}-look1" / "results.jsonl").read_text()  # fmt: skip
    assert after == look1
    again.folder.abandon()  # let go of the run's lock (this test does not finish the run)

"""Acceptance statistics: a change that is only noise must be accepted at most at rate alpha."""

from __future__ import annotations

import math
import random
from pathlib import Path

from fapo.compare import PairedImprovement
from fapo.evaluate import evaluate
from fapo.spec import AcceptanceSpec
from fapo.stats import paired_test
from fapo.tenant import load_tenant


def _ceiling(n: int, alpha: float) -> float:
    """alpha*n plus two binomial standard deviations: a bound a correct test stays under."""
    return alpha * n + 2 * math.sqrt(n * alpha * (1 - alpha))


def test_paired_tests_hold_alpha_under_the_null() -> None:
    rng = random.Random(7)
    n_trials, alpha = 200, 0.05
    for method in ("permutation", "bootstrap"):
        hits = 0
        for t in range(n_trials):
            a = [float(rng.random() < 0.6) for _ in range(40)]
            b = [float(rng.random() < 0.6) for _ in range(40)]
            hits += paired_test(a, b, method=method, resamples=300, seed=t).p_value < alpha
        assert hits <= _ceiling(n_trials, alpha), (method, hits)


def test_paired_test_detects_a_real_gain() -> None:
    rng = random.Random(3)
    base = [float(rng.random() < 0.4) for _ in range(40)]
    better = [1.0 if x == 1.0 or rng.random() < 0.5 else 0.0 for x in base]
    t = paired_test(better, base, resamples=2000)
    assert t.mean_diff >= 0.15 and t.p_value < 0.01 and t.losses == 0


def test_min_improvement_gates_even_a_significant_gain() -> None:
    inc = {str(i): 0.0 for i in range(40)}
    cand = {str(i): (1.0 if i < 6 else 0.0) for i in range(40)}  # +0.15, exact p = 1/64
    rule = PairedImprovement(AcceptanceSpec(min_improvement=0.2, alpha=0.05))
    d = rule.decide(cand, inc)
    assert not d.accepted and "below the required" in d.reason
    assert PairedImprovement(AcceptanceSpec(min_improvement=0.05)).decide(cand, inc).accepted
    four = {str(i): (1.0 if i < 4 else 0.0) for i in range(40)}  # exact p = 1/16: too weak
    assert not PairedImprovement(AcceptanceSpec(min_improvement=0.05)).decide(four, inc).accepted


def test_noise_only_change_on_a_noisy_sim_is_accepted_at_most_at_alpha(project) -> None:
    """A/A test: candidate and incumbent differ only by a sentence the simulator ignores, so at
    temperature > 0 they differ only by seeded noise. Over many seeds, acceptances <= alpha."""
    t = load_tenant("demo-qa", project)
    fixes = Path(t.root / "fixes")
    files = {f"prompts/{p.name}": p.read_text() for p in (fixes / "prompts").glob("*.md")}
    files["structure.yaml"] = (fixes / "structure.yaml").read_text()
    files["params.yaml"] = (
        (fixes / "params.yaml").read_text().replace("temperature: 0.0", "temperature: 0.8")
    )
    assert "temperature: 0.8" in files["params.yaml"]
    spec = AcceptanceSpec(min_improvement=0.0, alpha=0.05, resamples=1000)
    trials, accepted, means = 30, 0, set()
    for i in range(trials):
        pair = []
        for side in ("a", "b"):
            prompt = files["prompts/answer.md"] + f"\n(Reference {i}{side}.)\n"
            v = t.variant({**files, "prompts/answer.md": prompt})
            pair.append(evaluate(v, "val", use_cache=False).scores)
        means.add(round(sum(pair[0].values()), 3))
        accepted += PairedImprovement(spec, seed=i).decide(pair[1], pair[0]).accepted
    assert len(means) > 3, "the simulator at temperature 0.8 should be noisy"
    assert accepted <= _ceiling(trials, spec.alpha), accepted

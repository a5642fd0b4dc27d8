"""The majority-vote transform stops drawing once the winner is settled, and returns what the full
vote returns: the same sample, so the same score, for fewer calls."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import yaml

from fapo.evaluate import evaluate
from fapo.tenant import load_tenant
from fapo.transforms import decided


def _full(votes: list[str]) -> int:
    """Index of the sample the full vote returns (the first sample with the most votes)."""
    best = Counter(votes).most_common(1)[0][0]
    return votes.index(best)


def _early(votes: list[str], samples: int) -> tuple[int, int]:
    """(index returned, samples drawn) when drawing stops as soon as `decided`."""
    drawn: list[str] = []
    for v in votes:
        drawn.append(v)
        if decided(drawn, samples):
            break
    best = Counter(drawn).most_common(1)[0][0]
    return drawn.index(best), len(drawn)


def test_stopping_early_returns_the_full_votes_winner_on_every_sequence() -> None:
    saved = 0
    for samples in (3, 5, 7):
        for votes in itertools.product("abc", repeat=samples):
            got, drawn = _early(list(votes), samples)
            assert got == _full(list(votes)), votes
            saved += samples - drawn
    assert saved > 0  # it does stop early somewhere
    # four agreeing draws of seven settle it; three of seven do not
    assert decided(["x"] * 4, 7) and not decided(["x"] * 3, 7)
    assert not decided(["x", "x", "x", "y"], 7) and decided(["x"] * 5 + ["y"], 7)
    assert not decided([], 7)


def test_a_vote_at_a_noisy_step_costs_fewer_calls_and_scores_the_same(project, tmp_path) -> None:
    """demo-qa's answer step at temperature 0.6 with a 7-sample vote: the early stop is
    compared with the full vote (decided() forced to False) on the same draws."""
    import fapo.transforms as tr

    t = load_tenant("demo-qa", project)
    params = {**yaml.safe_load(t.files["params.yaml"]), "temperature": 0.6}
    vote = {"transforms": [{"kind": "majority_vote", "node": "answer", "key": "answer", "samples": 7}]}  # fmt: skip
    v = t.variant({"params.yaml": yaml.safe_dump(params), "structure.yaml": yaml.safe_dump(vote)})
    early = evaluate(v, "val", use_cache=False, out_dir=tmp_path / "early", limit=20)
    real = tr.decided
    tr.decided = lambda votes, samples: False
    try:
        full = evaluate(v, "val", use_cache=False, out_dir=tmp_path / "full", limit=20)
    finally:
        tr.decided = real
    assert early.scores == full.scores
    assert early.steps["answer"]["calls"] < full.steps["answer"]["calls"] == 7 * 20


def test_random_sequences_agree_too() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        n = rng.choice([3, 5, 7, 9])
        votes = [rng.choice("aab") for _ in range(n)]
        assert _early(votes, n)[0] == _full(votes)

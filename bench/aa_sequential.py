"""10. A/A with sequential acceptance: false accepts per decision and per run, and val calls saved.

The simulated model (`sim:`, a deterministic simulator, not an LLM) runs demo-qa with every
documented fix at temperature 0.8, so each evaluation of val is a seeded noisy draw: draw i has
a repeat index, which the simulator uses only as the seed of its sampling noise. Any two draws are
therefore a candidate and an incumbent that differ only by noise.
(The draws are the repeats of one evaluation: the simulator seeds its noise by the repeat index,
the same seeding as the "(Reference i.)" variants of tests/test_acceptance.py, at a fraction of
the cost of building a variant per draw.)

- per decision: D independent decisions from 2·D disjoint draws, by today's fixed rule
  (PairedImprovement, all of val, alpha 0.05) and by the sequential rule (GroupSequential: 3
  looks, O'Brien–Fleming spending, futility at gain <= 0) at the per-decision alpha 0.05;
- per run: R independent null runs (an incumbent draw and C candidate draws each, disjoint from
  every other run's; the same pool of draws as the decisions), decided as the loop decides them (`staged_decide` with the run-level
  online fallback, horizon C), against today's loop (fixed rule at alpha 0.05 each time);
- val examples evaluated per null decision by the sequential design against 40 (each example
  costs the same calls in this chain, so the ratio is the ratio of val calls).

Intervals are Wilson 95% intervals. `--pool FILE` keeps the draws, so a second run only decides.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, Row, emit, parser, project, tempdir  # noqa: E402


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, c - h), min(1.0, c + h))


def draws(pool_path: Path, k: int) -> list[dict[str, float]]:
    """K noisy evaluations of demo-qa (all fixes, temperature 0.8) on val; the pool file grows."""
    import shutil

    from fapo.evaluate import evaluate
    from fapo.settings import load_settings
    from fapo.tenant import load_tenant

    pool = json.loads(pool_path.read_text()) if pool_path.is_file() else []
    if len(pool) >= k:
        return pool[:k]
    root = project(tempdir("aa-seq"))
    shutil.copytree(REPO / "tenants" / "demo-qa", root / "tenants" / "demo-qa")
    t = load_tenant("demo-qa", load_settings(root))
    fixes = t.root / "fixes"
    files = {f"prompts/{p.name}": p.read_text() for p in (fixes / "prompts").glob("*.md")}
    files["structure.yaml"] = (fixes / "structure.yaml").read_text()
    files["params.yaml"] = (fixes / "params.yaml").read_text().replace("temperature: 0.0", "temperature: 0.8")  # fmt: skip
    assert "temperature: 0.8" in files["params.yaml"], "fixes/params.yaml changed"
    # one evaluation with k repeats: repeat i is draw i (the simulator's noise is seeded by the
    # repeat index), per-example scores of every repeat are in results.jsonl
    out = root / "eval"
    evaluate(t.variant(files), "val", use_cache=False, concurrency=16, repeats=k, out_dir=out)
    pool = [{} for _ in range(k)]
    for line in (out / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        pool[r["repeat"]][r["id"]] = r["score"]
    pool_path.write_text(json.dumps(pool))
    return pool


def measure(pool: list[dict[str, float]], decisions: int, runs: int, cands: int, resamples: int) -> list[Row]:  # fmt: skip
    from types import SimpleNamespace

    from fapo.compare import PairedImprovement
    from fapo.records import DecisionRecord
    from fapo.sequential import GroupSequential, staged_decide
    from fapo.spec import AcceptanceSpec

    spec = AcceptanceSpec(min_improvement=0.02, alpha=0.05, resamples=resamples)
    fixed, seq = PairedImprovement(spec, seed=0), GroupSequential(spec, seed=0)
    n = len(pool[0])
    # per decision: disjoint pairs
    f_acc = s_acc = seen = 0
    for j in range(decisions):
        inc, cand = pool[2 * j], pool[2 * j + 1]
        f_acc += fixed.decide(cand, inc).accepted
        d = seq.decide(cand, inc)
        s_acc += d.accepted
        seen += d.stats["n"]
    # per run: disjoint groups of 1 + C draws (the same pool as the decisions: each figure uses
    # disjoint draws within itself; the two figures are not independent of each other)
    base = 0
    r_seq = r_fixed = 0
    seen_runs = compared = 0
    for r in range(runs):
        group = pool[base + r * (cands + 1) : base + (r + 1) * (cands + 1)]
        inc = SimpleNamespace(scores=group[0], mean=sum(group[0].values()) / n)
        prior: list[DecisionRecord] = []
        hit = False
        for c in group[1:]:
            d = staged_decide(GroupSequential(spec, seed=r), "v", "i", inc, lambda k, ids, c=c: {i: c[i] for i in ids}, prior, spec.run_alpha, cands)  # fmt: skip
            prior.append(d)
            seen_runs += d.stats["n"]
            compared += 1
            if d.accepted:
                hit = True
                break  # the run has made its false accept
        r_seq += hit
        r_fixed += any(PairedImprovement(spec, seed=r).decide(c, group[0]).accepted for c in group[1:])  # fmt: skip
    lo_f, hi_f = wilson(f_acc, decisions)
    lo_s, hi_s = wilson(s_acc, decisions)
    lo_r, hi_r = wilson(r_seq, runs)
    lo_o, hi_o = wilson(r_fixed, runs)
    means = [sum(p.values()) / n for p in pool]
    return [
        Row(
            "draws of val (n examples), val means",
            f"{len(pool)} ({n}), {min(means):.3f}–{max(means):.3f}",
            "(info)",
        ),  # fmt: skip
        Row(
            f"per decision, fixed rule (today): false accepts of {decisions}",
            f"{f_acc}/{decisions} = {f_acc / decisions:.3f}",
            "<= 0.05",
            f_acc / decisions <= 0.05,
            note=f"Wilson 95% {lo_f:.3f}–{hi_f:.3f}",
        ),
        Row(
            f"per decision, sequential rule: false accepts of {decisions}",
            f"{s_acc}/{decisions} = {s_acc / decisions:.3f}",
            "<= 0.05",
            s_acc / decisions <= 0.05,
            note=f"Wilson 95% {lo_s:.3f}–{hi_s:.3f}",
        ),
        Row(
            "val examples evaluated per null decision, sequential / full",
            f"{seen / decisions:.1f} / {n} = {seen / decisions / n:.2f}x",
            "< 1",
            seen / decisions / n < 1,
            note=f"{1 - seen / decisions / n:.0%} of val calls saved on no-effect candidates",
        ),
        Row(
            f"per run ({cands} candidates), today's loop: runs with a false accept",
            f"{r_fixed}/{runs} = {r_fixed / runs:.3f}",
            "(info)",
            note=f"Wilson 95% {lo_o:.3f}–{hi_o:.3f}",
        ),
        Row(
            f"per run ({cands} candidates), sequential + run-level fallback",
            f"{r_seq}/{runs} = {r_seq / runs:.3f}",
            "<= 0.05",
            r_seq / runs <= 0.05,
            note=f"Wilson 95% {lo_r:.3f}–{hi_r:.3f}; val examples per comparison {seen_runs / max(1, compared):.1f} of {n}",
        ),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--decisions", type=int, default=200)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--candidates", type=int, default=5)
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--pool", type=Path, default=None, help="keep/reuse the draws in this file")
    a = p.parse_args()
    if a.quick:
        a.decisions, a.runs, a.candidates = 20, 10, 3
    k = max(2 * a.decisions, a.runs * (a.candidates + 1))
    pool_path = a.pool or tempdir("aa-pool") / "pool.json"
    pool = draws(pool_path, k)
    emit(
        f"10. A/A, sequential acceptance and run-level control ({k} noisy draws of demo-qa val)",
        measure(pool, a.decisions, a.runs, a.candidates, a.resamples),
        a.json,
    )


if __name__ == "__main__":
    main()

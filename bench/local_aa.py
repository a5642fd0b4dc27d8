"""9. A/A on a real model: how often does fapo's acceptance rule accept a change that is no change?

The candidate *is* the incumbent; only SmolLM2-135M's sampling noise differs (llama.cpp, via
`local:smollm2`; temperature 0.8, a seed per example and per evaluation, so every evaluation is
reproducible and evaluations are independent draws). M evaluations of tenants/local-tickets (k=2)
on val give M/2 independent decisions (disjoint pairs) and M·(M-1) ordered pairs (not independent;
more decisions for the same calls). A sound rule accepts in at most `alpha` of them.
Needs the local extra (bash .ci/setup.sh --all).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, copy_tenant, emit, parser, project, tempdir  # noqa: E402

SAMPLED = "SAMPLED_SEED"


def _noisy_copy(root: Path) -> Path:
    """local-tickets with temperature 0.8 and `seed = eval_seed * 1000 + crc32(ticket) % 1000`."""
    dest = copy_tenant("local-tickets", root)
    chain = dest / "chain.py"
    text = chain.read_text()
    text = text.replace("llm = ctx.llm(temperature=0.0,", "llm = ctx.llm(temperature=0.8,").replace(
        "        reply = await llm.ainvoke(prompt)",
        "        import zlib\n\n"
        "        seed = int(ctx.params['eval_seed']) * 1000 + zlib.crc32(state['ticket'].encode()) % 1000\n"
        "        reply = await llm.ainvoke(prompt, seed=seed)",
    )
    assert "temperature=0.8" in text and "seed=seed" in text, "chain.py changed; update the bench"
    chain.write_text(text)
    spec = dest / "tenant.yaml"
    spec.write_text(
        spec.read_text().replace(
            "params:\n",
            "params:\n  eval_seed:\n    type: int\n    min: 0\n    max: 100000\n",
        )
    )
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace("k: 0 ", "k: 2 ") + "eval_seed: 0\n")
    return dest


def measure(m: int, split: str) -> list[Row]:
    from fapo.compare import PairedImprovement
    from fapo.evaluate import evaluate
    from fapo.local_llm import available, stop_all
    from fapo.settings import load_settings
    from fapo.tenant import load_tenant

    why = available()
    if why:
        raise SystemExit(f"bench/local_aa.py needs the local extra: {why}")
    root = project(tempdir("local-aa"))
    _noisy_copy(root)
    settings = load_settings(root)
    base = load_tenant("local-tickets", settings)
    params = (base.root / "params.yaml").read_text()
    runs = []
    try:
        for s in range(m):
            variant = base.variant(
                {"params.yaml": params.replace("eval_seed: 0", f"eval_seed: {s}")}
            )
            runs.append(evaluate(variant, split, use_cache=False, concurrency=2))
    finally:
        stop_all()
    rule = PairedImprovement(base.spec.acceptance, seed=base.spec.seed)
    alpha = base.spec.acceptance.alpha
    disjoint = [
        rule.decide(runs[i + 1].scores, runs[i].scores).accepted for i in range(0, m - 1, 2)
    ]
    ordered = [
        rule.decide(runs[j].scores, runs[i].scores).accepted
        for i in range(m)
        for j in range(m)
        if i != j
    ]
    means = [r.mean for r in runs]
    calls = sum(r.calls for r in runs)
    # how noisy the draws are: examples whose score differs between two evaluations
    flips = sum(
        sum(runs[i].scores[k] != runs[i + 1].scores[k] for k in runs[i].scores)
        for i in range(0, m - 1, 2)
    ) / max(1, len(disjoint))
    fa_d = sum(disjoint) / max(1, len(disjoint))
    fa_o = sum(ordered) / max(1, len(ordered))
    hi = fa_d + 1.96 * math.sqrt(max(fa_d * (1 - fa_d), 1e-9) / max(1, len(disjoint)))
    return [
        Row("evaluations x examples, calls", f"{m} x {runs[0].n}, {calls}", "(info)"),
        Row(
            "val mean across draws",
            f"{min(means):.3f}–{max(means):.3f}",
            "(info)",
            note=f"examples flipping between two draws: {flips:.1f} of {runs[0].n}",
        ),
        Row(
            "false accepts, independent decisions",
            f"{sum(disjoint)}/{len(disjoint)} = {fa_d:.3f}",
            f"<= alpha {alpha}",
            fa_d <= alpha,
            note=f"normal-approximation 95% upper bound {hi:.3f}",
        ),
        Row(
            "false accepts, all ordered pairs (dependent)",
            f"{sum(ordered)}/{len(ordered)} = {fa_o:.3f}",
            f"<= alpha {alpha}",
            fa_o <= alpha,
        ),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=20, help="evaluations (independent draws)")
    p.add_argument("--split", default="val")
    a = p.parse_args()
    m = 6 if a.quick else a.m
    emit(
        f"9. A/A false-accept rate on SmolLM2-135M ({m} draws of {a.split})",
        measure(m, a.split),
        a.json,
    )


if __name__ == "__main__":
    main()

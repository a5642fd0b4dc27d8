"""9. A/A on a real model: how often does fapo's acceptance rule accept a change that is no change?

The candidate *is* the incumbent; only SmolLM2-135M's sampling noise differs (llama.cpp via
`local:smollm2`, temperature 0.8, no retrieved examples, the first team named in a 16-token reply, a seed per example and per draw, so every
draw is reproducible and draws are independent).

Design (the machine is 2 shared cores at about 1 s a call, so draws are bought once): all 32
tickets of tenants/local-tickets (train+val+test, one pool) are each drawn K times (32·K calls),
and the per-example scores are saved (`--pool FILE`). A null decision then pairs, for every ticket,
two *different* draws of it (candidate, incumbent), chosen with a seeded RNG, and asks the rule.

- K/2 decisions built from disjoint draws are fully independent (each draw used once);
- D decisions built from random pairs reuse draws, so they are dependent: their false-accept rate
  is an unbiased estimate, but its binomial interval is too narrow. The printed interval for it is a
  bootstrap over tickets (the 32 tickets resampled with replacement, each with its own draws, the
  whole estimate repeated); it does not carry the finite number of draws per ticket.

Caveat: the pool is one model, one prompt, 32 tickets; a rate measured here says the rules hold on
this kind of noise, not on every model. Needs the local extra (bash .ci/setup.sh --all).

    python bench/local_aa.py --pool /tmp/aa-pool.json --minutes 35   # draw (resumes a pool file)
    python bench/local_aa.py --pool /tmp/aa-pool.json --analyze-only # decisions from the pool
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, Row, copy_tenant, emit, parser, project, tempdir  # noqa: E402

TEMPERATURE = 0.8


def _noisy_copy(root: Path) -> Path:
    """local-tickets with temperature 0.8, the tenant's k=0 and max_tokens 16, the reply's first team
    name as the prediction (the chain's own `team_named`: without it every reply is a sentence and
    scores 0; with k=2 examples the model continues the ticket, 1 of 32 right — no noise to test), `seed = draw * 1000 + crc32(ticket) % 1000`, and every ticket of the
    three splits in one split (`val`) — the pool is one population."""
    dest = copy_tenant("local-tickets", root)
    chain = dest / "chain.py"
    text = chain.read_text()
    text = (
        text.replace("llm = ctx.llm(temperature=0.0,", f"llm = ctx.llm(temperature={TEMPERATURE},")
        .replace(
            "        reply = await llm.ainvoke(prompt)",
            "        import zlib\n\n"
            "        seed = int(ctx.params['eval_seed']) * 1000 + zlib.crc32(state['ticket'].encode()) % 1000\n"
            "        reply = await llm.ainvoke(prompt, seed=seed)",
        )
        .replace('return {"team": content.strip()}', 'return {"team": team_named(content.strip())}')
    )
    assert f"temperature={TEMPERATURE}" in text and "seed=seed" in text, "chain.py changed"
    assert "team_named(content" in text, "chain.py changed"
    chain.write_text(text)
    spec = dest / "tenant.yaml"
    spec.write_text(
        spec.read_text().replace(
            "params:\n",
            "params:\n  eval_seed:\n    type: int\n    min: 0\n    max: 100000\n",
        )
    )
    params = dest / "params.yaml"
    text = params.read_text()
    assert "k: 0 " in text and "max_tokens: 16" in text, "params.yaml changed"
    params.write_text(text + "eval_seed: 0\n")
    data = dest / "data"
    rows = [line for s in ("train", "val", "test") for line in (data / f"{s}.jsonl").open()]
    (data / "val.jsonl").write_text("".join(r if r.endswith("\n") else r + "\n" for r in rows))
    return dest


def draw(pool_path: Path, k_max: int, minutes: float) -> dict:
    """Draw until K = k_max draws per ticket or `minutes` pass; the pool file grows per draw."""
    from fapo.evaluate import evaluate
    from fapo.local_llm import available, stop_all
    from fapo.settings import load_settings
    from fapo.tenant import load_tenant

    why = available()
    if why:
        raise SystemExit(f"bench/local_aa.py needs the local extra: {why}")
    pool = json.loads(pool_path.read_text()) if pool_path.is_file() else {"draws": []}
    root = project(tempdir("local-aa"))
    _noisy_copy(root)
    base = load_tenant("local-tickets", load_settings(root))
    params = (base.root / "params.yaml").read_text()
    t0 = time.monotonic()
    try:
        while len(pool["draws"]) < k_max and time.monotonic() - t0 < minutes * 60:
            d = len(pool["draws"])
            variant = base.variant({"params.yaml": params.replace("eval_seed: 0", f"eval_seed: {d}")})  # fmt: skip
            s = evaluate(variant, "val", use_cache=False, concurrency=2)
            pool["draws"].append(
                {"seed": d, "scores": s.scores, "calls": s.calls, "wall_s": s.wall_s}
            )
            pool.update(model="local:smollm2", temperature=TEMPERATURE, k=0, max_tokens=16, n=s.n)
            pool_path.write_text(json.dumps(pool))
            print(f"draw {d}: mean {s.mean:.3f}, {s.calls} calls, {s.wall_s:.0f} s", flush=True)
    finally:
        stop_all()
    return pool


def _decisions(draws: list[dict[str, float]], d: int, seed: int, decide) -> list[bool]:
    """`d` null decisions: per ticket two different draws, (candidate, incumbent)."""
    rng = random.Random(seed)
    ids = sorted(draws[0])
    out = []
    for _ in range(d):
        cand, inc = {}, {}
        for i in ids:
            a, b = rng.sample(range(len(draws)), 2)
            cand[i], inc[i] = draws[a][i], draws[b][i]
        out.append(decide(cand, inc))
    return out


def analyze(pool: dict, d: int, boot: int) -> list[Row]:
    from fapo.compare import PairedImprovement
    from fapo.sequential import GroupSequential
    from fapo.spec import AcceptanceSpec

    draws = [x["scores"] for x in pool["draws"]]
    k, n = len(draws), len(draws[0])
    spec = AcceptanceSpec(min_improvement=0.02, alpha=0.05, resamples=1000)
    fixed = PairedImprovement(spec, seed=0)
    seq = GroupSequential(spec, seed=0)
    rules = {
        "fixed (today)": lambda c, i: fixed.decide(c, i).accepted,
        "sequential": lambda c, i: seq.decide(c, i).accepted,
    }
    flips = [sum(draws[j][x] != draws[j + 1][x] for x in draws[0]) for j in range(0, k - 1, 2)]
    means = [sum(x.values()) / n for x in draws]
    rows = [
        Row(
            "tickets x draws, calls",
            f"{n} x {k}, {sum(x['calls'] for x in pool['draws'])}",
            "(info)",
        ),  # fmt: skip
        Row(
            "mean score across draws",
            f"{min(means):.3f}–{max(means):.3f}",
            "(info)",
            note=f"tickets whose score differs between two draws: {sum(flips) / max(1, len(flips)):.1f} of {n}",
        ),
    ]
    for name, decide in rules.items():
        disjoint = [
            decide(draws[j + 1], draws[j]) for j in range(0, k - 1, 2)
        ]  # each draw used once
        paired = _decisions(draws, d, 1, decide)
        rate = sum(paired) / d
        # bootstrap over tickets (the decision's iid unit): resample the 32 tickets with
        # replacement, each keeping its own K draws, and repeat the pooled estimate
        rng, est, m = random.Random(2), [], max(50, d // 4)
        ids = sorted(draws[0])
        for b in range(boot):
            pick = [rng.choice(ids) for _ in ids]
            bd = [{f"{t}#{j}": x[t] for j, t in enumerate(pick)} for x in draws]
            est.append(sum(_decisions(bd, m, 100 + b, decide)) / m)
        est.sort()
        lo, hi = est[int(0.025 * boot)], est[min(boot - 1, int(0.975 * boot))]
        rows += [
            Row(
                f"{name}: false accepts, independent decisions",
                f"{sum(disjoint)}/{len(disjoint)}",
                "(info)",
            ),
            Row(
                f"{name}: false accepts, {d} decisions from the pool",
                f"{sum(paired)}/{d} = {rate:.3f}",
                "<= alpha 0.05",
                rate <= 0.05,
                note=f"95% interval {lo:.3f}–{hi:.3f} (bootstrap over tickets, {boot} resamples)",
            ),
        ]
    return rows


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--pool", type=Path, default=REPO / "bench" / "data" / "local_aa_pool.json")
    p.add_argument("--k", type=int, default=40, help="draws per ticket (at most)")
    p.add_argument("--minutes", type=float, default=35.0, help="stop drawing after this long")
    p.add_argument("--decisions", type=int, default=400)
    p.add_argument("--boot", type=int, default=20)
    p.add_argument("--analyze-only", action="store_true")
    p.add_argument("--draw-only", action="store_true")
    a = p.parse_args()
    a.pool.parent.mkdir(parents=True, exist_ok=True)
    if a.quick:
        a.k, a.decisions, a.boot = min(a.k, 6), 100, 10
    pool = json.loads(a.pool.read_text()) if a.analyze_only else draw(a.pool, a.k, a.minutes)
    if a.draw_only:
        return
    if len(pool["draws"]) < 2:
        raise SystemExit(f"{a.pool}: fewer than 2 draws; run without --analyze-only first")
    emit(
        f"9. A/A false-accept rate on SmolLM2-135M ({len(pool['draws'])} draws of {pool['n']} tickets)",
        analyze(pool, a.decisions, a.boot),
        a.json,
    )


if __name__ == "__main__":
    main()

"""8. fapo eval on a real local model vs a plain async OpenAI-SDK loop (same prompts, concurrency).

Both sides talk to one llama.cpp server (SmolLM2-135M, `local:smollm2`, started once here) and
send the same prompts — the ones `fapo eval` of `tenants/local-tickets` recorded — with the same
settings (temperature 0, the tenant's max_tokens) and at the same concurrency, without any cache.
The sides alternate order on every repetition; the figure is the median of per-repetition wall
ratios fapo / plain (target <= 1.05: fapo's graph, recording and metering cost next to nothing
beside real inference). Needs the local extra (bash .ci/setup.sh --all).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Row,
    Timed,
    alternate,
    copy_tenant,
    emit,
    median,
    paired_ratio,
    parser,
    project,
    tempdir,
)

TARGET = 1.05


def measure(reps: int, split: str, concurrency: int) -> list[Row]:
    from fapo.evaluate import evaluate
    from fapo.local_llm import available, ensure_server, stop_all
    from fapo.settings import load_settings
    from fapo.tenant import load_tenant

    why = available()
    if why:
        raise SystemExit(f"bench/local_eval.py needs the local extra: {why}")
    root = project(tempdir("local-eval"))
    copy_tenant("local-tickets", root)
    settings = load_settings(root)
    tenant = load_tenant("local-tickets", settings)
    server = ensure_server("smollm2")  # shared by both sides; started before any timing
    max_tokens = int(tenant.params["max_tokens"])
    try:
        first = evaluate(tenant, split, out_dir=root / "prompts", use_cache=False)
        rows = [
            json.loads(line)
            for line in (root / "prompts" / "results.jsonl").read_text().split("\n")
            if line
        ]
        prompts = [c["messages"] for r in rows for s in r["steps"] for c in s["calls"]]
        n_calls = len(prompts)

        def fapo_side() -> Timed:
            t0 = time.perf_counter()
            s = evaluate(tenant, split, use_cache=False, concurrency=concurrency)
            assert s.calls == n_calls, (s.calls, n_calls)
            return Timed(time.perf_counter() - t0, 0.0)

        def plain_side() -> Timed:
            return Timed(
                asyncio.run(plain(server.base_url, server.alias, prompts, concurrency, max_tokens)),
                0.0,
            )

        times = alternate({"fapo": fapo_side, "plain": plain_side}, reps)
    finally:
        stop_all()
    f = [t.wall_s for t in times["fapo"]]
    p = [t.wall_s for t in times["plain"]]
    ratio = paired_ratio(f, p)
    return [
        Row("examples / model calls per side", f"{first.n} / {n_calls}", "(info)"),
        Row(
            "fapo eval wall, median",
            f"{median(f):.2f} s",
            "(info)",
            note=f"all: {[round(x, 2) for x in f]}",
        ),
        Row(
            "plain AsyncOpenAI wall, median",
            f"{median(p):.2f} s",
            "(info)",
            note=f"all: {[round(x, 2) for x in p]}",
        ),
        Row("wall fapo / plain", f"{ratio:.3f}", f"<= {TARGET}", ratio <= TARGET),
    ]


async def plain(
    base_url: str, model: str, prompts: list, concurrency: int, max_tokens: int
) -> float:
    """The baseline: the OpenAI SDK, a semaphore, the recorded messages, nothing else."""
    import openai

    roles = {"human": "user", "ai": "assistant", "system": "system"}
    client = openai.AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=600)
    sem = asyncio.Semaphore(concurrency)

    async def one(messages: list) -> None:
        async with sem:
            await client.chat.completions.create(
                model=model,
                messages=[
                    {"role": roles.get(m["role"], m["role"]), "content": m["content"]}
                    for m in messages
                ],
                temperature=0.0,
                max_tokens=max_tokens,
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(one(m) for m in prompts))
    wall = time.perf_counter() - t0
    await client.close()
    return wall


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--split", default="val")
    p.add_argument("--concurrency", type=int, default=2)
    a = p.parse_args()
    reps = 3 if a.quick else 5
    rows = measure(reps, a.split, a.concurrency)
    emit(
        f"8. fapo eval vs plain AsyncOpenAI on SmolLM2-135M via llama.cpp ({a.split}, concurrency {a.concurrency}, {reps} reps)",
        rows,
        a.json,
    )


if __name__ == "__main__":
    main()

"""1. Engine overhead: `fapo eval` against plain LangGraph `abatch` on the same 4-step chain.

Both sides run as fresh processes on the same generated tenant (1,000 examples, simulated model,
same concurrency), alternating order, at 0 ms and 50 ms simulated latency. `fapo eval` runs as
users run it: cold call cache on, every step of every example recorded to results.jsonl, scored.
Target: fapo wall time <= 1.10 x plain LangGraph in both settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    FAPO,
    PY,
    Row,
    alternate,
    emit,
    median,
    paired_ratio,
    parser,
    project,
    run_child,
    tempdir,
)
from gen_tenant import STEPS, write_tenant  # noqa: E402

TARGET = 1.10


def measure(n: int, latency_ms: float, concurrency: int, reps: int) -> list[Row]:
    root = project(tempdir(f"overhead{latency_ms:g}"))
    tenant = write_tenant(root / "tenants" / "bench4", n, latency_ms=latency_ms)
    plain = [
        PY,
        str(Path(__file__).with_name("plain_langgraph.py")),
        str(tenant),
        "--concurrency",
        str(concurrency),
    ]
    counter = iter(range(10_000))

    def fapo_eval():
        i = next(counter)
        cache = root / ".fapo" / "cache.sqlite"
        for p in (cache, cache.with_name("cache.sqlite-wal"), cache.with_name("cache.sqlite-shm")):
            p.unlink(missing_ok=True)  # cold cache every time: every call is paid for
        return run_child(
            [
                *FAPO,
                "eval",
                str(tenant),
                "--split",
                "val",
                "--concurrency",
                str(concurrency),
                "--json",
                "--out",
                str(root / "runs" / f"e{i}"),
            ],
            root,
        )

    res = alternate({"plain": lambda: run_child(plain, root), "fapo": fapo_eval}, reps)
    pw, fw = [t.wall_s for t in res["plain"]], [t.wall_s for t in res["fapo"]]
    pc, fc = [t.cpu_s for t in res["plain"]], [t.cpu_s for t in res["fapo"]]
    ratio = paired_ratio(fw, pw)
    calls = n * len(STEPS)
    ideal = calls * latency_ms / 1000 / concurrency
    tag = f"{latency_ms:g} ms"
    return [
        Row(
            f"[{tag}] plain LangGraph wall",
            f"{median(pw):.2f} s",
            note=f"CPU {median(pc):.2f} s = {median(pc) / calls * 1000:.2f} ms per model call "
            f"(the floor); ideal N·steps·latency/C = {ideal:.2f} s",
        ),
        Row(
            f"[{tag}] fapo eval wall",
            f"{median(fw):.2f} s",
            note=f"CPU {median(fc):.2f} s = {median(fc) / calls * 1000:.2f} ms per model call; "
            f"runs {', '.join(f'{x:.2f}' for x in fw)} vs {', '.join(f'{x:.2f}' for x in pw)}",
        ),
        Row(f"[{tag}] fapo / plain wall", f"{ratio:.3f}x", f"<= {TARGET:.2f}x", ratio <= TARGET),
        Row(f"[{tag}] fapo / plain CPU", f"{paired_ratio(fc, pc):.3f}x", "(info)"),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    rows = measure(a.n, 0, a.concurrency, 2 if a.quick else 5)
    rows += measure(a.n, 50, a.concurrency, 1 if a.quick else 3)
    emit(f"1. Engine overhead (N={a.n}, 4 LLM steps, concurrency {a.concurrency})", rows, a.json)


if __name__ == "__main__":
    main()

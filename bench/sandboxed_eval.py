"""Sandboxed evaluation of candidate code: the worker (fapo/worker.py) against in-process evaluation.

The generated 4-step tenant (simulated model, not an LLM) is evaluated on val twice per repetition,
alternating order, in one process: once as the tenant (its own chain.py, in-process) and once as a
code-level candidate whose chain.py differs by a comment (bubblewrap'd worker, every model call
proxied to this process). Cold call cache both times, so every call is paid. Reported: wall time
per example on each side, the ratio, the added time per example, the worker's start-up (the same
evaluation on 1 example), and whether scores and metered calls are identical (they must be).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, alternate, emit, in_process, median, paired_ratio, parser, tempdir  # noqa: E402
from gen_tenant import STEPS, write_tenant  # noqa: E402


def measure(n: int, latency_ms: float, concurrency: int, reps: int) -> list[Row]:
    from fapo import sandbox
    from fapo.evaluate import evaluate
    from fapo.llm import Meter
    from fapo.settings import Settings
    from fapo.tenant import load_tenant

    root = tempdir(f"sealed{latency_ms:g}")
    write_tenant(root / "tenants" / "bench4", n, latency_ms=latency_ms)
    settings = Settings(root=root)
    tenant = load_tenant(root / "tenants" / "bench4", settings)
    cand = tenant.variant({"chain.py": tenant.files["chain.py"] + "\n# candidate\n"})
    seen: dict[str, list[tuple[float, dict]]] = {"in-process": [], "worker": []}

    def side(name: str, variant, limit: int | None = None):
        def run():
            meter = Meter()

            def go():
                s = evaluate(variant, "val", use_cache=False, meter=meter,
                             concurrency=concurrency, limit=limit)  # fmt: skip
                if limit is None:
                    seen[name].append((s.mean, meter.snapshot()))

            return in_process(go)

        return run

    if sandbox.unavailable():
        return [Row("worker", "skipped", note=f"no sandbox here: {sandbox.unavailable()}")]
    res = alternate({"in-process": side("in-process", tenant), "worker": side("worker", cand)},
                    reps)  # fmt: skip
    one = alternate({"in-process": side("in-process", tenant, 1),
                     "worker": side("worker", cand, 1)}, reps)  # fmt: skip
    iw, ww = [t.wall_s for t in res["in-process"]], [t.wall_s for t in res["worker"]]
    i1, w1 = [t.wall_s for t in one["in-process"]], [t.wall_s for t in one["worker"]]
    startup = median([w - i for w, i in zip(w1, i1, strict=True)])
    per_ex = median([(w - i) / n for w, i in zip(ww, iw, strict=True)])
    same = seen["in-process"] == seen["worker"]
    tag = f"{latency_ms:g} ms"
    calls = seen["worker"][0][1]["calls"]
    return [
        Row(f"[{tag}] in-process wall / example", f"{median(iw) / n * 1000:.2f} ms",
            note=f"runs {', '.join(f'{x:.2f}' for x in iw)} s"),
        Row(f"[{tag}] worker wall / example", f"{median(ww) / n * 1000:.2f} ms",
            note=f"runs {', '.join(f'{x:.2f}' for x in ww)} s"),
        Row(f"[{tag}] worker / in-process wall", f"{paired_ratio(ww, iw):.3f}x", "(info)"),
        Row(f"[{tag}] added per example (start-up included)", f"{per_ex * 1000:.2f} ms",
            "(info)"),
        Row(f"[{tag}] worker start-up (1-example evaluation, difference)",
            f"{startup:.2f} s", "(info)"),
        Row(f"[{tag}] same scores and metered calls", f"{same} ({calls} calls)", "True",
            same and calls == n * len(STEPS)),
    ]  # fmt: skip


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    a = p.parse_args()
    rows = measure(a.n, 0, a.concurrency, 2 if a.quick else 4)
    rows += measure(a.n, 50, a.concurrency, 1 if a.quick else 2)
    emit(f"Sandboxed evaluation worker (N={a.n}, 4 LLM steps, concurrency {a.concurrency})",
         rows, a.json)  # fmt: skip


if __name__ == "__main__":
    main()

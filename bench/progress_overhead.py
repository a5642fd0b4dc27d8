"""Progress hook overhead: one evaluation with and without the hook `fapo run` installs.

The same generated 4-step tenant (simulated model, 0 ms latency: the worst case for a relative
cost, since nothing else takes time), evaluated in this process with the call cache off on both
sides, alternating order. "hook" is exactly what `Run._eval` passes to `evaluate`: a `Watch` that
asks the wall-clock budget after every finished example and sends throttled `EvalProgress` events
(stamped with a budget snapshot, as `Run._notify` does) to the plain `ProgressPrinter`.
Target: hook / none wall <= 1.02x.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, alternate, emit, in_process, median, paired_ratio, parser, project, tempdir  # noqa: E402  # fmt: skip
from gen_tenant import write_tenant  # noqa: E402

TARGET = 1.02


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    from rich.console import Console

    from fapo import observers as obs
    from fapo.budget import Budget
    from fapo.evaluate import evaluate
    from fapo.llm import Meter
    from fapo.settings import load_settings
    from fapo.spec import BudgetSpec
    from fapo.tenant import load_tenant

    root = project(tempdir("progress"))
    write_tenant(root / "tenants" / "bench4", a.n)
    tenant = load_tenant("bench4", load_settings(root))
    sent = [0]

    def none() -> None:
        evaluate(tenant, "val", use_cache=False, concurrency=a.concurrency)

    def hook() -> None:
        budget = Budget(BudgetSpec(max_minutes=60), Meter(), started=time.time())
        out = io.StringIO()
        printer = obs.ProgressPrinter(console=Console(file=out, force_terminal=False))

        def notify(e: obs.Event) -> None:
            sent[0] += 1
            printer(e.model_copy(update={"budget": budget.snapshot()}))

        progress = obs.RunProgress(notify, calls=lambda: budget.meter.calls, check=budget.check_clock)  # fmt: skip
        watch = progress.evaluation("v001", "val")
        evaluate(tenant, "val", use_cache=False, concurrency=a.concurrency, meter=budget.meter,
                 on_progress=watch.tick)  # fmt: skip

    none()  # warm-up: imports, the compiled graph, gc.freeze
    reps = 3 if a.quick else 9
    res = alternate({"none": lambda: in_process(none), "hook": lambda: in_process(hook)}, reps)
    nw, hw = [t.wall_s for t in res["none"]], [t.wall_s for t in res["hook"]]
    ratio = paired_ratio(hw, nw)
    nc, hc = [t.cpu_s for t in res["none"]], [t.cpu_s for t in res["hook"]]
    # The hook alone, in a tight loop: what it adds per finished example, against what an
    # example costs (a shared machine moves whole-evaluation times by more than the hook costs).
    budget = Budget(BudgetSpec(max_minutes=60), Meter(), started=time.time())
    quiet = obs.ProgressPrinter(console=Console(file=io.StringIO(), force_terminal=False))
    progress = obs.RunProgress(
        lambda e: quiet(e.model_copy(update={"budget": budget.snapshot()})),
        calls=lambda: budget.meter.calls,
        check=budget.check_clock,
    )
    ticks = 200_000
    watch = progress.evaluation("v001", "val")
    c0 = time.process_time()
    for i in range(1, ticks + 1):
        watch.tick(i, ticks)
    per_tick_us = (time.process_time() - c0) / ticks * 1e6
    per_example_us = median(nc) / a.n * 1e6
    rows = [
        Row(
            "evaluate, no hook: wall", f"{median(nw):.3f} s", note=", ".join(f"{x:.3f}" for x in nw)
        ),  # fmt: skip
        Row(
            "evaluate, run's progress hook: wall",
            f"{median(hw):.3f} s",
            note=", ".join(f"{x:.3f}" for x in hw),
        ),  # fmt: skip
        Row("hook / none wall", f"{ratio:.3f}x", f"<= {TARGET:.2f}x", ratio <= TARGET),
        Row("hook / none CPU", f"{paired_ratio(hc, nc):.3f}x", "(info)"),
        Row(
            "hook CPU per finished example",
            f"{per_tick_us:.2f} us",
            "(info)",
            note=f"{per_tick_us / per_example_us * 100:.3f}% of an example's CPU ({per_example_us:.0f} us)",
        ),  # fmt: skip
        Row("events sent per evaluation", f"{sent[0] / reps:.0f}", f"(of {a.n} examples)"),
    ]
    emit(f"Progress hook overhead (N={a.n}, 4 LLM steps, concurrency {a.concurrency})", rows, a.json)  # fmt: skip


if __name__ == "__main__":
    main()

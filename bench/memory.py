"""5. Memory: peak RSS of `fapo eval` over 10,000 examples of the generated 4-step tenant.

Target: <= 300 MB, with every example's record streamed to results.jsonl rather than held.
A 1,000-example run is measured too, to show memory does not grow with the split.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FAPO, Row, emit, parser, project, run_child, tempdir  # noqa: E402
from gen_tenant import write_tenant  # noqa: E402

TARGET_MB = 300.0


def peak(n: int, concurrency: int) -> tuple[float, float, int, float]:
    """(peak RSS MB, wall s, result lines, results.jsonl MB) of one cold `fapo eval`."""
    root = project(tempdir(f"mem{n}"))
    tenant = write_tenant(root / "tenants" / "bench4", n)
    out = root / "runs" / "eval"
    t = run_child(
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
            str(out),
        ],
        root,
    )
    results = out / "results.jsonl"
    with results.open("rb") as fh:
        lines = sum(1 for _ in fh)
    return t.maxrss_mb, t.wall_s, lines, results.stat().st_size / 2**20


def measure(n: int, concurrency: int) -> list[Row]:
    small = peak(n // 10, concurrency)
    big = peak(n, concurrency)
    return [
        Row(
            f"peak RSS, {n // 10:,} examples",
            f"{small[0]:.0f} MB",
            "(info)",
            note=f"{small[1]:.1f} s",
        ),
        Row(
            f"peak RSS, {n:,} examples",
            f"{big[0]:.0f} MB",
            f"<= {TARGET_MB:.0f} MB",
            big[0] <= TARGET_MB,
            note=f"{big[1]:.1f} s; growth over the 10x smaller run: {big[0] - small[0]:+.0f} MB",
        ),
        Row(
            "results streamed to disk",
            f"{big[2]:,} lines, {big[3]:.0f} MB",
            f"{n:,} lines",
            big[2] == n,
        ),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=16)
    a = p.parse_args()
    emit(
        f"5. Memory (fapo eval, 4 LLM steps, concurrency {a.concurrency})",
        measure(a.n, a.concurrency),
        a.json,
    )


if __name__ == "__main__":
    main()

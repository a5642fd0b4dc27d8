"""Run the whole benchmark suite offline and print every figure with its target and PASS/FAIL.

    .venv/bin/python bench/run_all.py [--quick] [--json FILE] [--only overhead,reeval,...]

Each benchmark runs in its own process (so start-up and peak memory are measured cleanly) and
prints its own table; a summary of every targeted figure follows. Exit status 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import PY, REPO, Row, env, print_table  # noqa: E402

SUITE = ("overhead", "reeval", "loop_cost", "startup", "memory")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    ap.add_argument("--json", type=Path, help="write every table to this JSON file")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(SUITE)}")
    a = ap.parse_args()
    names = a.only.split(",") if a.only else list(SUITE)
    unknown = sorted(set(names) - set(SUITE))
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]}; choose from {', '.join(SUITE)}")
    tables, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fapo-bench-") as tmp:
        for name in names:
            out = Path(tmp) / f"{name}.json"
            cmd = [
                PY,
                str(HERE / f"{name}.py"),
                "--json",
                str(out),
                *(["--quick"] if a.quick else []),
            ]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=REPO, env=env())
            if proc.returncode != 0 or not out.is_file():
                tables.append(
                    {
                        "title": name,
                        "rows": [
                            {
                                "figure": f"{name} benchmark",
                                "value": f"crashed (exit {proc.returncode})",
                                "target": "runs",
                                "passed": False,
                                "note": "",
                            }
                        ],
                    }
                )
                continue
            data = json.loads(out.read_text())
            data["seconds"] = round(time.perf_counter() - t0, 1)
            tables.append(data)
    summary = [
        Row(f"{t['title'].split(' (')[0]} · {r['figure']}", r["value"], r["target"], r["passed"])
        for t in tables
        for r in t["rows"]
        if r["passed"] is not None
    ]
    print_table(
        f"Summary ({time.perf_counter() - started:.0f} s, {sys.platform}, {_cpus()} CPUs)", summary
    )
    if a.json:
        a.json.write_text(json.dumps(tables, indent=2))
    return 0 if all(r.passed for r in summary) else 1


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers of the benchmark scripts: a throw-away project folder, timed runs, tables.

Every script measures ratios side by side in one process run (the machine is shared and noisy),
alternating the order of the sides and taking medians, and prints one table with targets.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
FAPO = [PY, "-m", "fapo"]


@dataclass
class Row:
    """One printed figure: what, measured value, target (text), pass/fail (None = info only)."""

    figure: str
    value: str
    target: str = ""
    passed: bool | None = None
    note: str = ""


def verdict(passed: bool | None) -> str:
    return "" if passed is None else ("PASS" if passed else "FAIL")


def print_table(title: str, rows: Sequence[Row]) -> None:
    """A small fixed-width table on stdout."""
    heads = ("figure", "value", "target", "result")
    cells = [(r.figure, r.value, r.target, verdict(r.passed)) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n## {title}\n")
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    print(line)
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
    for r in rows:
        if r.note:
            print(f"  · {r.figure}: {r.note}")
    sys.stdout.flush()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    return p


def emit(title: str, rows: Sequence[Row], json_path: Path | None) -> None:
    print_table(title, rows)
    if json_path:
        json_path.write_text(json.dumps({"title": title, "rows": [asdict(r) for r in rows]}))


def project(tmp: Path) -> Path:
    """A project root with its own fapo.toml, so runs and the call cache stay inside `tmp`."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "tenants").mkdir(exist_ok=True)
    (tmp / "fapo.toml").write_text(
        '[paths]\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n', encoding="utf-8"
    )
    return tmp


def copy_tenant(name: str, root: Path) -> Path:
    dest = root / "tenants" / name
    shutil.copytree(REPO / "tenants" / name, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def tempdir(prefix: str) -> Path:
    """A scratch folder removed when the script exits (set FAPO_BENCH_KEEP=1 to keep it)."""
    path = Path(tempfile.mkdtemp(prefix=f"fapo-bench-{prefix}-"))
    if not os.environ.get("FAPO_BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def env() -> dict[str, str]:
    """The child environment: offline, the repo importable, no inherited provider keys."""
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_"))
    }
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    return e


@dataclass
class Timed:
    wall_s: float
    cpu_s: float  # user+sys of the child (or of this process for in-process runs)
    maxrss_mb: float = 0.0
    stdout: str = ""


def run_child(cmd: Sequence[str], cwd: Path, timeout: float = 1800) -> Timed:
    """Run a command to completion; wall time, and (via wait4) its own CPU time and peak RSS."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env(), stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(" ".join(cmd))
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text, etext = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{etext[-3000:]}")
    return Timed(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, text)


def in_process(fn: Callable[[], object]) -> Timed:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return Timed(
        time.perf_counter() - t0,
        time.process_time() - c0,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def alternate(sides: dict[str, Callable[[], Timed]], reps: int) -> dict[str, list[Timed]]:
    """Run every side `reps` times, reversing the order on every other repetition."""
    names = list(sides)
    out: dict[str, list[Timed]] = {n: [] for n in names}
    for rep in range(reps):
        for n in names if rep % 2 == 0 else reversed(names):
            out[n].append(sides[n]())
    return out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of per-repetition ratios a[i]/b[i] (pairs ran back to back, so share the noise)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))

"""3. Loop cost (P3, P6): task-model calls `fapo run` spends with gated moves against today's loop,
side by side in one run, on demo-qa, demo-instructions, the planted suite and the no-help tenant.

"Today" is main at b3f3121, the commit before gating, extracted with `git archive` into the
scratch folder and put first on the child's PYTHONPATH (`--today off` uses this tree with
FAPO_GATING=off instead, for a checkout without git history). Both sides run `fapo run TENANT
--agent builtin` in fresh processes, each in its own project with a cold call cache (the default,
cache on), with the tenant's default budget. Calls are `run.json` `spent.calls` (task-model calls
actually issued); calls by stage come from the event log. Target P3: the same final val and test
with <= 0.5x today's calls; P6: the no-help tenant stops with kind `no_help` within 1,000 calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FAPO, REPO, Row, emit, env, parser, project, tempdir  # noqa: E402

TARGET = 0.5
P6_CALLS = 1000
TODAY = "b3f3121"
DEMOS = ("demo-qa", "demo-instructions")
PLANTED = REPO / "bench" / "planted"


def planted_names() -> list[str]:
    return sorted(p.name for p in PLANTED.iterdir() if (p / "tenant.yaml").is_file())


def _copy(name: str, root: Path) -> None:
    """The tenant in a scratch project (planted ones without their answers)."""
    dest = root / "tenants" / name
    if name == "nohelp":
        sys.path.insert(0, str(REPO / "tests"))
        from nohelp_tenant import write

        write(root / "tenants")
        return
    src = REPO / "tenants" / name if name in DEMOS else PLANTED / name
    skip = shutil.ignore_patterns("__pycache__", "fixes", "defects.yaml")
    shutil.copytree(src, dest, ignore=skip)


def _today_code(root: Path, ref: str) -> Path:
    """Today's `fapo` package, extracted from git (no worktree metadata is written)."""
    dest = root / f"fapo-{ref}"
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "fapo"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def _stages(events: Path) -> dict[str, int]:
    """Calls issued per kind of loop stage (delta of the budget snapshot each event carries)."""
    out: dict[str, int] = defaultdict(int)
    prev = 0
    for line in events.read_text().splitlines():
        e = json.loads(line)
        b = e.get("budget") or {}
        if "calls" in b:
            kind = e.get("kind", "?")
            if kind == "eval":
                kind = "eval " + str(e.get("key", "")).split("/")[-1]
            out[kind] += b["calls"] - prev
            prev = b["calls"]
    return dict(out)


def _run(name: str, root: Path, extra_env: dict[str, str]) -> dict:
    project(root)
    _copy(name, root)
    e = {**env(), **extra_env}
    cmd = [*FAPO, "run", name, "--agent", "builtin", "--json", "--run-id", "r"]
    proc = subprocess.run(cmd, cwd=root, env=e, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rdir = root / "runs" / name / "r"
    info = json.loads((rdir / "run.json").read_text())
    events = [json.loads(x) for x in (rdir / "events.jsonl").read_text().splitlines()]
    stop = next((x["data"] for x in events if x["kind"] == "stopped"), {})
    best = info["best"]
    return {
        "calls": info["spent"]["calls"],
        "val": info["val"][best],
        "test": info["test"][best],
        "best": best,
        "accepted": info["accepted"],
        "stop_kind": stop.get("kind", ""),
        "stop": info.get("stop_reason", ""),
        "stages": _stages(rdir / "events.jsonl"),
    }


def measure(tenants: list[str], today: str) -> tuple[list[Row], dict]:
    tmp = tempdir("loop")
    if today == "off":
        old = {"PYTHONPATH": env()["PYTHONPATH"], "FAPO_GATING": "off"}
        label = "this tree, FAPO_GATING=off"
    else:
        code = _today_code(tmp, today)
        old = {"PYTHONPATH": os.pathsep.join([str(code), str(REPO)]), "FAPO_GATING": "off"}
        label = f"main at {today}"
    rows: list[Row] = []
    raw: dict[str, dict] = {}
    sums = {"today": 0, "gated": 0}
    for k, name in enumerate(tenants):
        # alternate which side runs first (the figures are calls, but keep the habit)
        sides = [("today", old), ("gated", {"FAPO_GATING": "on"})]
        got = {}
        for side, extra in sides if k % 2 == 0 else sides[::-1]:
            got[side] = _run(name, tmp / f"{name}-{side}", extra)
        a, b = got["today"], got["gated"]
        raw[name] = got
        ratio = b["calls"] / a["calls"] if a["calls"] else 0.0
        same = (round(a["val"], 6), round(a["test"], 6)) == (
            round(b["val"], 6),
            round(b["test"], 6),
        )
        prop = (a["stages"].get("proposal", 0), b["stages"].get("proposal", 0))
        note = (
            f"val {a['val']:.3f} / {b['val']:.3f}, test {a['test']:.3f} / {b['test']:.3f}; "
            f"accepted {a['accepted']} / {b['accepted']}; proposal calls {prop[0]} / {prop[1]}; "
            f"stop {a['stop_kind']} / {b['stop_kind']}"
        )
        if name == "nohelp":
            ok = b["stop_kind"] == "no_help" and b["calls"] <= P6_CALLS
            rows.append(
                Row(
                    "P6 nohelp (label noise, n_train 80): calls today / gated",
                    f"{a['calls']} / {b['calls']} = {ratio:.3f}",
                    f"<= {P6_CALLS}, kind no_help",
                    ok,
                    note=note + f"; reason: {b['stop'][:160]}…",
                )
            )
            continue
        sums["today"] += a["calls"]
        sums["gated"] += b["calls"]
        rows.append(
            Row(
                f"P3 {name}: calls today / gated",
                f"{a['calls']} / {b['calls']} = {ratio:.3f}",
                f"<= {TARGET}, same val+test",
                same and ratio <= TARGET,
                note=note,
            )
        )
    if sums["today"]:
        rows.append(
            Row(
                "P3 all P3 tenants together: calls today / gated",
                f"{sums['today']} / {sums['gated']} = {sums['gated'] / sums['today']:.3f}",
                "(info)",
                note=f"today = {label}",
            )
        )
    return rows, raw


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--tenants", help="comma-separated (default: the demos, the planted suite, nohelp)"
    )
    p.add_argument("--today", default=TODAY, help=f"git ref of today's loop, or 'off' ({TODAY})")
    p.add_argument("--raw", type=Path, help="also write every run's figures to this JSON file")
    a = p.parse_args()
    if a.tenants:
        tenants = a.tenants.split(",")
    elif a.quick:
        tenants = [*DEMOS, "nohelp"]
    else:
        tenants = [*DEMOS, *planted_names(), "nohelp"]
    rows, raw = measure(tenants, a.today)
    emit("3. Loop cost (fapo run, built-in agent): today / gated", rows, a.json)
    if a.raw:
        a.raw.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()

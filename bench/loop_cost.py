"""3. Loop cost (P3, P6): task-model calls `fapo run` spends with gated moves against today's loop,
side by side in one run, on demo-qa, demo-instructions, the planted suite and the no-help tenant.

"Today" is main at b3f3121, the commit before gating, extracted with `git archive` into the
scratch folder and put first on the child's PYTHONPATH (`--today off` uses this tree with
FAPO_GATING=off instead, for a checkout without git history). Both sides run `fapo run TENANT
--agent builtin` in fresh processes, each in its own project with a cold call cache (the default,
cache on), with the tenant's default budget. Calls are `run.json` `spent.calls` (task-model calls
actually issued, the sealed test evaluation included); calls by stage come from the event log.

The same-result comparison at half the calls: where the gated loop reaches a different final score
than today's, the uncapped ratio compares runs that did different work. So every P3 tenant gets a
third run, this tree gated with `--budget-calls B`, B = floor(0.5 x today's calls) - T, T = the
calls of the uncapped gated run's `*/test` evaluations (its event log): a budget stop is always
followed by the sealed test evaluation with the budget lifted, so T is set aside for it. The
figure is that run's whole spend (`spent.calls`, test included), its final val and test.
`--no-capped` skips it; B <= 0 skips it for that tenant. For reference the uncapped gated row also
gives the calls issued when its incumbent was first scored >= today's final val on all of val.

Target P3, per tenant: (a) the uncapped gated run has the same final val and test as today
(rounded to 6 decimals) with <= 0.5x today's calls, or (b) the half-budget run spent <= 0.5x
today's calls in all and its final val and test are each >= today's. P6: the no-help tenant
stops with kind `no_help` within 1,000 calls. A tenant today's code cannot run is reported as
"no today figure" and the bench goes on.
"""

from __future__ import annotations

import json
import math
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
GATED = {"FAPO_GATING": "on"}


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


def _events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _stages(events: Path) -> dict[str, int]:
    """Calls issued per kind of loop stage (delta of the budget snapshot each event carries)."""
    out: dict[str, int] = defaultdict(int)
    prev = 0
    for e in _events(events):
        b = e.get("budget") or {}
        if "calls" in b:
            kind = e.get("kind", "?")
            if kind == "eval":
                kind = "eval " + str(e.get("key", "")).split("/")[-1]
            out[kind] += b["calls"] - prev
            prev = b["calls"]
    return dict(out)


def sealed_test_calls(events: Path) -> int:
    """Calls of the run's sealed test evaluations (`eval` events keyed `VARIANT/test`): the
    eval's own `calls`, else the growth of the budget snapshot since the event before it."""
    total, prev = 0, 0
    for e in _events(events):
        calls = (e.get("budget") or {}).get("calls")
        if e.get("kind") == "eval" and str(e.get("key", "")).endswith("/test"):
            own = (e.get("data") or {}).get("calls")
            if own is not None:
                total += int(own)
            elif calls is not None:
                total += calls - prev
        if calls is not None:
            prev = calls
    return total


def reached_val_at(events: Path, val: float | None) -> int | None:
    """Calls issued when the run's incumbent (the baseline or an accepted variant) was first
    scored >= `val` on all of val (its `VARIANT/val` eval), before any test call; None if never."""
    if val is None:
        return None
    incumbents = {"v000"}
    for e in _events(events):
        data, key = e.get("data") or {}, str(e.get("key", ""))
        if e.get("kind") == "decision" and data.get("status") == "accepted":
            incumbents.add(key)
        vid, _, split = key.partition("/")
        if e.get("kind") == "eval" and split == "val" and vid in incumbents:
            mean = data.get("mean")
            if mean is not None and round(mean, 6) >= round(val, 6):
                return (e.get("budget") or {}).get("calls")
    return None


def capped_budget(today_calls: int, events: Path) -> tuple[int, int]:
    """(B, T): the `--budget-calls` B that leaves room under TARGET x today's calls for the sealed
    test evaluation after a budget stop, T its calls as the uncapped run's `events` paid them."""
    t = sealed_test_calls(events)
    return math.floor(TARGET * today_calls) - t, t


def _run(name: str, root: Path, extra_env: dict[str, str], budget_calls: int | None = None) -> dict:
    project(root)
    _copy(name, root)
    e = {**env(), **extra_env}
    cmd = [*FAPO, "run", name, "--agent", "builtin", "--json", "--run-id", "r"]
    if budget_calls is not None:
        cmd += ["--budget-calls", str(budget_calls)]
    try:
        proc = subprocess.run(cmd, cwd=root, env=e, capture_output=True, text=True, timeout=3600)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{name}: {' '.join(cmd)} timed out after {exc.timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: {' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rdir = root / "runs" / name / "r"
    info = json.loads((rdir / "run.json").read_text())
    events = _events(rdir / "events.jsonl")
    stop = next((x["data"] for x in events if x["kind"] == "stopped"), {})
    best = info["best"]
    return {
        "calls": info["spent"]["calls"],
        "val": info["val"].get(best),  # None: a budget stop inside the baseline has no val
        "test": info["test"].get(best),
        "best": best,
        "accepted": info["accepted"],
        "stop_kind": stop.get("kind", ""),
        "stop": info.get("stop_reason", ""),
        "stages": _stages(rdir / "events.jsonl"),
        "test_calls": sealed_test_calls(rdir / "events.jsonl"),
        "events": str(rdir / "events.jsonl"),
    }


def _r6(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _f(x: float | None) -> str:
    return "none" if x is None else f"{x:.3f}"


def same_result(a: dict, b: dict) -> bool:
    return (_r6(a["val"]), _r6(a["test"])) == (_r6(b["val"]), _r6(b["test"]))


def at_least(today: dict, c: dict) -> bool:
    """Final val and test each >= today's (rounded to 6 decimals; a missing score never is)."""
    pairs = [(_r6(c[k]), _r6(today[k])) for k in ("val", "test")]
    return all(x is not None and y is not None and x >= y for x, y in pairs)


def _last_line(err: Exception) -> str:
    lines = [x for x in str(err).splitlines() if x.strip()]
    return (lines[-1] if lines else type(err).__name__)[:200]


def _p3_rows(name: str, got: dict, capped: bool) -> tuple[list[Row], dict]:
    """The rows of one P3 tenant and its verdict record (the runs are `measure`'s: `got`)."""
    a, b = got["today"], got["gated"]
    rows: list[Row] = []
    verdict: dict = {"a": None, "b": None, "passed": None, "why": ""}
    if a is None:
        why = f"no today figure: today's run failed ({got['errors']['today']})"
        verdict["why"] = why
        if b is not None:
            rows.append(
                Row(
                    f"P3 {name}: gated calls (uncapped)",
                    f"{b['calls']}",
                    "(info)",
                    note=f"val {_f(b['val'])}, test {_f(b['test'])}; stop {b['stop_kind']}",
                )
            )
        rows.append(Row(f"P3 {name}", "no today figure", "(a) or (b)", None, note=why))
        return rows, verdict
    if b is None:
        why = f"the uncapped gated run failed ({got['errors']['gated']})"
        verdict.update(passed=False, why=why)
        rows.append(Row(f"P3 {name}", "no gated figure", "(a) or (b)", False, note=why))
        return rows, verdict
    ratio = b["calls"] / a["calls"] if a["calls"] else math.inf
    same = same_result(a, b)
    ok_a = same and ratio <= TARGET
    prop = (a["stages"].get("proposal", 0), b["stages"].get("proposal", 0))
    reach = b.get("reached_today_val_at")
    reached = (
        "its incumbent never reached today's val"
        if reach is None
        else f"its incumbent first reached today's val at {reach} calls "
        f"({reach / a['calls']:.3f}x today, before the test calls)"
    )
    why_not = [
        x
        for x in (
            "" if same else "final val/test differ",
            "" if ratio <= TARGET else f"{ratio:.3f}x > {TARGET}x",
        )
        if x
    ]
    held = "holds" if ok_a else "does not hold: " + "; ".join(why_not)
    rows.append(
        Row(
            f"P3 {name} (a): calls today / gated, uncapped",
            f"{a['calls']} / {b['calls']} = {ratio:.3f}",
            f"<= {TARGET}, same val+test",
            note=(
                f"(a) {held}. val {_f(a['val'])} / {_f(b['val'])}, "
                f"test {_f(a['test'])} / {_f(b['test'])}; best {a['best']} / {b['best']}; "
                f"accepted {a['accepted']} / {b['accepted']}; proposal calls {prop[0]} / {prop[1]}; "
                f"stop {a['stop_kind']} / {b['stop_kind']}; gated: {reached}"
            ),
        )
    )
    verdict["a"] = ok_a
    c = got.get("capped")
    if capped:
        budget, tcalls = got["budget_calls"], got["test_calls"]
        half = math.floor(TARGET * a["calls"])
        if budget <= 0:
            rows.append(
                Row(
                    f"P3 {name} (b): half-budget run",
                    "not run",
                    f"<= {TARGET}, val+test >= today",
                    note=f"B = {half} - {tcalls} test calls = {budget} <= 0: no room for a capped run",
                )
            )
        elif c is None:
            rows.append(
                Row(
                    f"P3 {name} (b): half-budget run, --budget-calls {budget}",
                    "failed",
                    f"<= {TARGET}, val+test >= today",
                    note=f"(b) does not hold: the run failed ({got['errors']['capped']})",
                )
            )
            verdict["b"] = False
        else:
            cr = c["calls"] / a["calls"] if a["calls"] else math.inf
            within, better = cr <= TARGET, at_least(a, c)
            verdict["b"] = within and better
            bits = [
                "" if within else f"spent {c['calls']} > {half}",
                "" if better else "final val or test below today's",
            ]
            held_b = (
                "holds" if verdict["b"] else "does not hold: " + "; ".join(x for x in bits if x)
            )
            rows.append(
                Row(
                    f"P3 {name} (b): total calls / today, --budget-calls {budget}",
                    f"{c['calls']} / {a['calls']} = {cr:.3f}",
                    f"<= {TARGET}, val+test >= today",
                    note=(
                        f"(b) {held_b}. B = floor({TARGET} x {a['calls']}) - {tcalls} test calls; "
                        f"val {_f(c['val'])} (today {_f(a['val'])}), "
                        f"test {_f(c['test'])} (today {_f(a['test'])}); best {c['best']}; "
                        f"accepted {c['accepted']}; test calls {c['test_calls']}; "
                        f"stop {c['stop_kind']}"
                    ),
                )
            )
    ok_b = bool(verdict["b"])
    verdict["passed"] = ok_a or ok_b
    not_run = "" if verdict["b"] is not None else (" (--no-capped)" if not capped else " (B <= 0)")
    if ok_a and ok_b:
        value = "met by (a) and (b)"
    elif ok_a:
        value = "met by (a) only" if not not_run else f"met by (a); (b) not run{not_run}"
    elif ok_b:
        value = "met by (b) only"
    else:
        value = (
            "not met: neither (a) nor (b)"
            if not not_run
            else f"not met: not (a); (b) not run{not_run}"
        )
    verdict["why"] = value
    rows.append(Row(f"P3 {name}", value, "(a) or (b)", verdict["passed"]))
    return rows, verdict


def measure(tenants: list[str], today: str, capped: bool = True) -> tuple[list[Row], dict]:
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
    sums = {"today": 0, "gated": 0, "capped": 0, "today_capped": 0}
    for k, name in enumerate(tenants):
        # alternate which side runs first (the figures are calls, but keep the habit)
        sides = [("today", old), ("gated", GATED)]
        got: dict = {"errors": {}}
        for side, extra in sides if k % 2 == 0 else sides[::-1]:
            try:
                got[side] = _run(name, tmp / f"{name}-{side}", extra)
            except RuntimeError as err:
                got[side] = None
                got["errors"][side] = _last_line(err)
        a, b = got["today"], got["gated"]
        raw[name] = got
        if a is not None and b is not None:
            b["reached_today_val_at"] = reached_val_at(Path(b["events"]), a["val"])
        if name == "nohelp":
            if a is None or b is None:
                side = "today" if a is None else "gated"
                why = f"the {side} run failed ({got['errors'][side]})"
                rows.append(Row("P6 nohelp", f"no {side} figure", "", False, note=why))
                continue
            ratio = b["calls"] / a["calls"] if a["calls"] else 0.0
            ok = b["stop_kind"] == "no_help" and b["calls"] <= P6_CALLS
            rows.append(
                Row(
                    "P6 nohelp (label noise, n_train 80): calls today / gated",
                    f"{a['calls']} / {b['calls']} = {ratio:.3f}",
                    f"<= {P6_CALLS}, kind no_help",
                    ok,
                    note=(
                        f"val {_f(a['val'])} / {_f(b['val'])}, test {_f(a['test'])} / "
                        f"{_f(b['test'])}; accepted {a['accepted']} / {b['accepted']}; "
                        f"stop {a['stop_kind']} / {b['stop_kind']}; reason: {b['stop'][:160]}…"
                    ),
                )
            )
            continue
        if capped and a is not None and b is not None:
            budget, tcalls = capped_budget(a["calls"], Path(b["events"]))
            got["budget_calls"], got["test_calls"] = budget, tcalls
            got["capped"] = None
            if budget > 0:
                try:
                    got["capped"] = _run(name, tmp / f"{name}-capped", GATED, budget_calls=budget)
                except RuntimeError as err:
                    got["errors"]["capped"] = _last_line(err)
        tenant_rows, got["p3"] = _p3_rows(name, got, capped)
        rows.extend(tenant_rows)
        if a is not None and b is not None:
            sums["today"] += a["calls"]
            sums["gated"] += b["calls"]
            if got.get("capped"):
                sums["today_capped"] += a["calls"]
                sums["capped"] += got["capped"]["calls"]
    if sums["today"]:
        rows.append(
            Row(
                "P3 all P3 tenants together: calls today / gated",
                f"{sums['today']} / {sums['gated']} = {sums['gated'] / sums['today']:.3f}",
                "(info)",
                note=f"today = {label}; tenants with both figures",
            )
        )
    if sums["today_capped"]:
        rows.append(
            Row(
                "P3 all half-budget runs together: calls today / capped",
                f"{sums['today_capped']} / {sums['capped']} = "
                f"{sums['capped'] / sums['today_capped']:.3f}",
                "(info)",
                note="tenants with a half-budget run",
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
    p.add_argument(
        "--no-capped",
        action="store_true",
        help="skip the third, half-budget run per P3 tenant (only (a) can pass)",
    )
    a = p.parse_args()
    if a.tenants:
        tenants = a.tenants.split(",")
    elif a.quick:
        tenants = [*DEMOS, "nohelp"]
    else:
        tenants = [*DEMOS, *planted_names(), "nohelp"]
    rows, raw = measure(tenants, a.today, capped=not a.no_capped)
    emit(
        "3. Loop cost (fapo run, built-in agent): today / gated / gated at half budget",
        rows,
        a.json,
    )
    if a.raw:
        a.raw.write_text(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()

"""Attribution accuracy and the built-in agent's fix rate on the planted-defect suite (bench/planted).

For every suite tenant, in one process run, side by side:

1. ground truth by evaluation: each failing train example's true causes (step, level) are the
   planted defects whose fix, left out alone, makes it fail (bench/planted/ground_truth.py);
2. the broken baseline is evaluated on train and `fapo.attribute.attribute` attributes its
   failures twice — with the tenant's checks.py (checks and oracles) and without it; when this
   fapo has interventions (`attribute(..., interventions=InterventionRunner(tenant))`), they run
   with their defaults and their calls are printed separately. Each
   failing example with a known cause is scored: right step, right level, both (right if it names
   any of the example's causes; "single" counts only examples with exactly one cause);
3. the built-in agent runs the loop with the tenant's default budget; a planted defect counts as
   fixed when, on the final variant with every *other* planted fix applied on top, at least 90% of
   the examples it causes pass (its failures are gone whatever else is left). Calls are the run's
   metered task-model calls.

    .venv/bin/python bench/attribution_accuracy.py            # whole suite (minutes on 2 cores)
    .venv/bin/python bench/attribution_accuracy.py --quick    # three tenants, attribution + loop
    .venv/bin/python bench/attribution_accuracy.py --no-loop  # attribution only
    .venv/bin/python bench/attribution_accuracy.py --ladder   # no interventions even if present

Every tenant is copied into a scratch project without its fixes/ and defects.yaml, so nothing the
loop or an agent sees holds the answers; the scratch folder is removed on exit (FAPO_BENCH_KEEP=1
keeps it).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "planted"))
sys.path.insert(0, str(HERE.parent))

from _common import project, tempdir  # noqa: E402
from ground_truth import FAIL_BELOW, GroundTruth, derive, fix_files, scores, suite_dirs  # noqa: E402

from fapo.attribute import attribute  # noqa: E402
from fapo.evaluate import evaluate  # noqa: E402
from fapo.settings import Settings, load_settings  # noqa: E402
from fapo.tenant import Tenant, load_tenant  # noqa: E402

QUICK = ("claim-check", "fact-lookup", "kb-match")
FIXED_SHARE = 0.9  # share of a defect's caused examples that must pass for it to count as fixed


@dataclass
class Tally:
    """Attribution hits over failing examples with a known cause."""

    n: int = 0
    step: int = 0
    level: int = 0
    both: int = 0
    single_n: int = 0
    single_both: int = 0
    unattributed: int = 0

    def add(self, got: tuple[str, str] | None, causes: list[tuple[str, str]]) -> None:
        self.n += 1
        if got is None:
            self.unattributed += 1
            return
        self.step += any(got[0] == s for s, _ in causes)
        self.level += any(got[1] == lv for _, lv in causes)
        self.both += got in causes
        if len(causes) == 1:
            self.single_n += 1
            self.single_both += got in causes

    def merge(self, other: Tally) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def pct(self, hits: int, n: int | None = None) -> str:
        n = self.n if n is None else n
        return f"{100 * hits / n:5.1f}%" if n else "    -"


@dataclass
class TenantResult:
    name: str
    failing: int = 0
    known: int = 0
    with_checks: Tally = field(default_factory=Tally)
    without_checks: Tally = field(default_factory=Tally)
    # without checks.py, on the failures one check-free intervention can show the cause of
    without_visible: Tally = field(default_factory=Tally)
    attribution_extra: dict[str, Any] = field(default_factory=dict)
    defects: int = 0
    excluded: list[str] = field(default_factory=list)  # not expected of the built-in agent
    fixed: list[str] = field(default_factory=list)
    recovered: dict[str, float] = field(default_factory=dict)
    calls: int | None = None
    loop_s: float = 0.0
    stop: str = ""
    accepted: list[str] = field(default_factory=list)


def attribute_options(extra: dict[str, Any]) -> dict[str, Any]:
    """The `--attr-opt key=value` keywords that `attribute` accepts (others are dropped)."""
    params = inspect.signature(attribute).parameters
    return {k: v for k, v in extra.items() if k in params}


def intervention_runner(tenant: Tenant) -> Any | None:
    """An interventions runner for `tenant` with its defaults, when this fapo has interventions
    (`attribute(..., interventions=fapo.interventions.InterventionRunner(tenant))`), else None."""
    if "interventions" not in inspect.signature(attribute).parameters:
        return None
    try:
        from fapo.interventions import InterventionRunner  # type: ignore[import-not-found]
    except ImportError:
        return None
    return InterventionRunner(tenant)


def without_checks(tenant: Tenant) -> Tenant:
    """The same tenant with no checks.py (no step checks, no oracles)."""
    return dataclasses.replace(tenant, spec=tenant.spec.model_copy(update={"checks": None}))


def attributed(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Example id -> (step, level) of the cluster it was put in."""
    out: dict[str, tuple[str, str]] = {}
    for c in report.get("clusters", []):
        for i in c["example_ids"]:
            out[i] = (c["step"], c["level"])
    return out


def score_attribution(
    gt: GroundTruth, got: dict[str, tuple[str, str]], failing: Iterable[str]
) -> Tally:
    by_id = {d.id: (d.step, d.level) for d in gt.defects}
    causes = gt.causes()
    t = Tally()
    for i in failing:
        if i in causes:
            t.add(got.get(i), [by_id[c] for c in causes[i]])
    return t


def copy_for_run(src: Path, root: Path) -> Path:
    """The tenant in a scratch project, without the answers (fixes/, defects.yaml)."""
    dest = root / "tenants" / src.name
    shutil.copytree(
        src, dest, ignore=shutil.ignore_patterns("__pycache__", "fixes", "defects.yaml")
    )
    return dest


def run_loop(tenant_dir: Path, settings: Settings, run_id: str) -> tuple[Any, dict[str, Any]]:
    """The built-in agent's loop with the tenant's default budget; returns (result, run.json).
    Uses the public `fapo.optimize` where this fapo has it, else `fapo.loop.run`."""
    try:
        from fapo.api import optimize
    except ImportError:
        from fapo.loop import RunOptions, run  # type: ignore[attr-defined]

        result = run(tenant_dir, RunOptions(agent="builtin", run_id=run_id), settings)
    else:
        extra = {"report": False} if "report" in inspect.signature(optimize).parameters else {}
        result = optimize(tenant_dir, agent="builtin", settings=settings, run_id=run_id, **extra)
    info = json.loads((result.run_dir / "run.json").read_text(encoding="utf-8"))
    return result, info


def fix_rate(
    suite_dir: Path, copy: Tenant, gt: GroundTruth, final_files: dict[str, str]
) -> dict[str, float]:
    """Per defect: share of its caused train examples that pass on the final variant with every
    other planted fix applied on top."""
    final = copy.variant({k: v for k, v in final_files.items()})
    out: dict[str, float] = {}
    ids = [d.id for d in gt.defects]
    for d in gt.defects:
        caused = gt.caused_by(d.id)
        if not caused:
            continue
        others = [i for i in ids if i != d.id]
        probe = final.variant(fix_files(suite_dir, others, base=dict(final.files)))
        got = scores(probe, "train")
        out[d.id] = sum(got.get(i, 0.0) >= FAIL_BELOW for i in caused) / len(caused)
    return out


def measure(
    suite_dir: Path,
    root: Path,
    settings: Settings,
    opts: dict[str, Any],
    *,
    loop: bool,
    interventions: bool,
) -> TenantResult:
    res = TenantResult(suite_dir.name)
    gt = derive(suite_dir, "train", settings, alone=True)
    copy_dir = copy_for_run(suite_dir, root)
    tenant = load_tenant(copy_dir, settings)
    out = root / "baseline" / suite_dir.name
    evaluate(tenant, "train", out_dir=out, use_cache=False)
    results = out / "results.jsonl"
    failing = sorted(i for i, s in gt.baseline.items() if s < FAIL_BELOW)
    res.failing = len(failing)
    res.known = sum(i in gt.causes() for i in failing)
    for label, variant in (("with", tenant), ("without", without_checks(tenant))):
        kwargs = dict(opts)
        runner = intervention_runner(variant) if interventions else None
        if runner is not None:
            kwargs["interventions"] = runner
        report = attribute(variant, results, "train", **kwargs)
        tally = score_attribution(gt, attributed(report), failing)
        setattr(res, f"{label}_checks", tally)
        if label == "without":
            seen = gt.visible_without_checks()
            got = attributed(report)
            res.without_visible = score_attribution(gt, got, [i for i in failing if i in seen])
        extra = {k: v for k, v in report.items() if k not in ("clusters", "split", "examples")}
        if runner is not None and hasattr(runner, "meter"):
            extra["intervention_calls"] = runner.meter.snapshot().get("calls")
        res.attribution_extra[label] = json.loads(json.dumps(extra, default=str))
    res.defects = sum(bool(gt.caused_by(d.id)) for d in gt.defects)
    res.excluded = [d.id for d in gt.defects if d.builtin_excluded and gt.caused_by(d.id)]
    if loop:
        from fapo.promote import variant_files

        t0 = time.perf_counter()
        result, info = run_loop(copy_dir, settings, f"planted-{suite_dir.name}")
        res.loop_s = time.perf_counter() - t0
        res.calls = (info.get("spent") or {}).get("calls")
        res.stop, res.accepted = result.stop_reason, list(result.accepted)
        final = variant_files(result.run_dir, result.best)
        res.recovered = fix_rate(suite_dir, tenant, gt, final)
        res.fixed = [d for d, share in res.recovered.items() if share >= FIXED_SHARE]
    return res


def print_report(results: list[TenantResult], loop: bool) -> dict[str, Any]:
    print("\n## Attribution on the broken baseline (train failures with a known cause)\n")
    head = (
        f"{'tenant':<16} {'fail':>4} {'known':>5} | {'step':>6} {'level':>6} {'both':>6} "
        f"{'single':>6} | {'step':>6} {'level':>6} {'both':>6} {'single':>6}"
    )
    print(f"{'':<28} | {'with checks.py':^27} | {'without checks.py':^27}")
    print(head)
    print("-" * len(head))
    total_w, total_wo = Tally(), Tally()
    rows = []
    for r in results:
        w, wo = r.with_checks, r.without_checks
        total_w.merge(w)
        total_wo.merge(wo)
        print(
            f"{r.name:<16} {r.failing:>4} {r.known:>5} | {w.pct(w.step)} {w.pct(w.level)} "
            f"{w.pct(w.both)} {w.pct(w.single_both, w.single_n)} | {wo.pct(wo.step)} "
            f"{wo.pct(wo.level)} {wo.pct(wo.both)} {wo.pct(wo.single_both, wo.single_n)}"
        )
        rows.append(
            {
                "tenant": r.name,
                "with": dataclasses.asdict(w),
                "without": dataclasses.asdict(wo),
                "without_visible": dataclasses.asdict(r.without_visible),
            }
        )
    w, wo = total_w, total_wo
    print("-" * len(head))
    print(
        f"{'overall':<16} {sum(r.failing for r in results):>4} {w.n:>5} | {w.pct(w.step)} "
        f"{w.pct(w.level)} {w.pct(w.both)} {w.pct(w.single_both, w.single_n)} | "
        f"{wo.pct(wo.step)} {wo.pct(wo.level)} {wo.pct(wo.both)} "
        f"{wo.pct(wo.single_both, wo.single_n)}"
    )
    calls = [
        (r.name, r.attribution_extra.get(k, {}).get("intervention_calls"))
        for r in results
        for k in ("with",)
    ]
    vis = Tally()
    for r in results:
        vis.merge(r.without_visible)
    print(
        "without checks.py, failures one check-free intervention can show (a parameter or noise "
        f"cause whose fix alone repairs it): {vis.n} of {wo.n}, both right {vis.pct(vis.both)} "
        "("
        + ", ".join(f"{r.name} {r.without_visible.both}/{r.without_visible.n}" for r in results)
        + ")"
    )
    if any(c is not None for _, c in calls):
        print("intervention calls (with checks.py): " + ", ".join(f"{n} {c}" for n, c in calls))
    extras = {r.name: r.attribution_extra for r in results}
    summary: dict[str, Any] = {"attribution": rows, "attribution_report_fields": extras}
    if loop:
        print("\n## Built-in agent, default budget: planted defects whose failures are gone\n")
        print(
            f"{'tenant':<16} {'fixed':>7} {'calls':>7} {'loop s':>7}  accepted / stop / per defect"
        )
        fixed = planted = calls = kept = kept_fixed = 0
        for r in results:
            fixed += len(r.fixed)
            planted += r.defects
            kept += r.defects - len(r.excluded)
            kept_fixed += len([d for d in r.fixed if d not in r.excluded])
            calls += r.calls or 0
            per = ", ".join(f"{d} {100 * s:.0f}%" for d, s in r.recovered.items())
            print(
                f"{r.name:<16} {len(r.fixed):>3}/{r.defects:<3} {r.calls or 0:>7} {r.loop_s:>7.0f}  "
                f"{len(r.accepted)} accepted; {r.stop}; {per}"
            )
        rate = 100 * fixed / planted if planted else 0.0
        print(f"{'overall':<16} {fixed:>3}/{planted:<3} {calls:>7}          fix rate {rate:.1f}%")
        kept_rate = 100 * kept_fixed / kept if kept else 0.0
        print(
            f"without the defects not expected of the built-in agent (defects.yaml "
            f"builtin_excluded: {', '.join(d for r in results for d in r.excluded) or 'none'}): "
            f"{kept_fixed}/{kept} ({kept_rate:.1f}%)"
        )
        summary["fix_rate_expected"] = kept_rate
        summary["loop"] = [
            {
                "tenant": r.name,
                "fixed": r.fixed,
                "recovered": r.recovered,
                "defects": r.defects,
                "excluded": r.excluded,
                "calls": r.calls,
                "accepted": r.accepted,
                "stop": r.stop,
            }
            for r in results
        ]
        summary["fix_rate"] = rate
    return summary


def _has_interventions() -> bool:
    return "interventions" in inspect.signature(attribute).parameters


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tenants", nargs="*", help="suite tenant names (default: all)")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--no-loop", action="store_true", help="attribution only, no agent runs")
    ap.add_argument(
        "--ladder", action="store_true", help="attribute without interventions even if available"
    )
    ap.add_argument(
        "--attr-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for fapo.attribute.attribute (JSON value), if it accepts it",
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    dirs = suite_dirs()
    wanted = args.tenants or (list(QUICK) if args.quick else [d.name for d in dirs])
    unknown = sorted(set(wanted) - {d.name for d in dirs})
    if unknown:
        print(f"unknown suite tenant(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    extra = dict(kv.split("=", 1) for kv in args.attr_opt)
    opts = attribute_options({k: _value(v) for k, v in extra.items()})
    root = project(tempdir("planted"))
    settings = load_settings(root)
    mode = "ladder only" if args.ladder or not _has_interventions() else "with interventions"
    print(f"attribution: {mode}; options {opts or 'none'}; scratch project {root}")
    results = []
    for d in dirs:
        if d.name in wanted:
            t0 = time.perf_counter()
            results.append(
                measure(
                    d,
                    root,
                    settings,
                    opts,
                    loop=not args.no_loop,
                    interventions=not args.ladder,
                )
            )
            print(f"  {d.name}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
    summary = print_report(results, loop=not args.no_loop)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

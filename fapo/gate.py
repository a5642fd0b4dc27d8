"""`fapo check`: the regression gate for nightly CI.

Re-evaluates the tenant's current pipeline (e.g. after the task model was updated) and compares it
with a recorded baseline: by default the latest recorded evaluation of the same pipeline (same
fingerprint of its mutable files), or a run / baseline JSON file given with `--against`. With
none recorded it says so and exits 2. A drop larger than allowed fails the gate,
with a reason a person can act on, a JSON verdict and a JUnit XML file CI systems display.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fapo.artifacts import read_json, write_json, write_text
from fapo.errors import FapoError
from fapo.settings import Settings

BASELINE_FORMAT = "fapo-baseline/1"


class NoBaseline(FapoError):
    """Nothing recorded to compare with (exit 2, like any input the user must supply)."""


@dataclass
class Baseline:
    score: float
    split: str
    source: str
    scores: dict[str, float] = field(default_factory=dict)  # per example, when known
    fingerprint: str = ""


@dataclass
class GateVerdict:
    ok: bool
    tenant: str
    split: str
    score: float
    baseline: float | None  # None: nothing to compare with (only with --save-baseline)
    baseline_source: str
    drop: float
    max_drop: float
    n: int
    errors: int
    reason: str
    worse: list[str] = field(default_factory=list)  # example ids that lost score
    better: list[str] = field(default_factory=list)
    pipeline_changed: bool | None = None
    out_dir: str = ""
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _run_baseline(run_dir: Path, split: str) -> Baseline:
    info = read_json(run_dir / "run.json")
    if info.get("status") != "finished":
        raise FapoError(
            f"run {run_dir} has not finished (status {info.get('status')}); "
            "resume it or compare with another run"
        )
    best = info.get("best", "v000")
    summary = run_dir / "variants" / best / "eval" / split / "summary.json"
    if not summary.is_file():
        raise FapoError(
            f"run {run_dir.name} has no {split} evaluation of its final variant {best}; "
            "check on val or test"
        )
    s = read_json(summary)
    return Baseline(
        float(s["mean"]),
        split,
        f"run {info['run_id']} ({best}, {split})",
        dict(s.get("scores") or {}),
        s.get("fingerprint", ""),
    )


def _file_baseline(path: Path, split: str) -> Baseline:
    try:
        d = read_json(path)
    except (OSError, ValueError) as exc:
        raise FapoError(
            f"{path}: not a readable JSON baseline ({exc}); write one with "
            "`fapo check TENANT --save-baseline FILE`"
        ) from None
    score = d.get("score", d.get("mean")) if isinstance(d, dict) else None
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise FapoError(
            f"{path}: key 'score' (a number in [0, 1]) is missing; write the file with "
            "`fapo check TENANT --save-baseline FILE`"
        )
    if d.get("split", split) != split:
        raise FapoError(
            f"{path}: key 'split' is {d['split']!r} but the check runs on {split!r}; "
            f"pass --split {d['split']}"
        )
    return Baseline(
        float(score), split, f"file {path}", dict(d.get("scores") or {}), d.get("fingerprint", "")
    )


def latest_finished_run(settings: Settings, tenant: str) -> Path | None:
    runs = []
    for p in (settings.runs_dir / tenant).glob("*/run.json"):
        try:
            info = read_json(p)
        except (OSError, ValueError):
            continue
        if info.get("status") == "finished" and info.get("tenant") == tenant:
            runs.append((info.get("finished") or p.stat().st_mtime, p.parent))
    return max(runs)[1] if runs else None


def latest_same_pipeline(
    settings: Settings, tenant: str, split: str, fingerprint: str
) -> Baseline | None:
    """The most recent recorded evaluation of exactly this pipeline (same fingerprint) on `split`.

    Looks at every variant of every run and at `fapo eval` folders. Earlier `fapo check` folders
    are left out on purpose: a gate compared with its own last result would drift down one
    allowed drop per night without ever failing.
    """
    root = settings.runs_dir / tenant
    found: list[tuple[float, Path, str]] = []
    for path in root.glob(f"*/variants/*/eval/{split}/summary.json"):
        vid, run_id = path.parents[2].name, path.parents[4].name
        found.append((path.stat().st_mtime, path, f"run {run_id} ({vid}, {split})"))
    for path in root.glob(f"eval-{split}-*/summary.json"):
        found.append((path.stat().st_mtime, path, f"fapo eval {path.parent.name}"))
    for _, path, source in sorted(found, key=lambda f: f[0], reverse=True):
        try:
            s = read_json(path)
        except (OSError, ValueError):
            continue
        if s.get("fingerprint") == fingerprint and s.get("split", split) == split:
            return Baseline(
                float(s["mean"]), split, source, dict(s.get("scores") or {}), fingerprint
            )
    return None


def resolve_baseline(
    settings: Settings, tenant: str, against: str | None, split: str, fingerprint: str = ""
) -> Baseline:
    """`--against` as a run folder, a run id of this tenant, or a baseline JSON file; without it,
    the latest evaluation of the same pipeline (raises NoBaseline when there is none)."""
    if against is None:
        found = latest_same_pipeline(settings, tenant, split, fingerprint) if fingerprint else None
        if found is None:
            raise NoBaseline(
                f"no recorded {split} evaluation of tenant '{tenant}' with its current files "
                f"(pipeline {fingerprint or '?'}) under {settings.runs_dir / tenant}; record one "
                f"with `fapo check {tenant} --save-baseline FILE`, or compare with a run or a "
                "baseline file via --against RUN|FILE"
            )
        return found
    p = Path(against)
    if (p / "run.json").is_file():
        return _run_baseline(p, split)
    if (settings.runs_dir / tenant / against / "run.json").is_file():
        return _run_baseline(settings.runs_dir / tenant / against, split)
    if p.is_file():
        return _file_baseline(p, split)
    raise FapoError(
        f"--against {against}: neither a run folder, a run id under "
        f"{settings.runs_dir / tenant}, nor a baseline file"
    )


def compare(
    tenant: str,
    split: str,
    scores: dict[str, float],
    errors: int,
    baseline: Baseline,
    max_drop: float,
    fingerprint: str = "",
) -> GateVerdict:
    """The verdict: paired on the common examples when the baseline kept per-example scores."""
    common = sorted(set(scores) & set(baseline.scores))
    if common and len(common) < len(scores | baseline.scores):
        # e.g. --limit: compare like with like
        base = sum(baseline.scores[i] for i in common) / len(common)
        cur = sum(scores[i] for i in common) / len(common)
        scope = f" on the {len(common)} examples both evaluated"
    else:
        base = baseline.score
        cur = sum(scores.values()) / len(scores) if scores else 0.0
        scope = ""
    worse = [i for i in common if scores[i] < baseline.scores[i] - 1e-9]
    better = [i for i in common if scores[i] > baseline.scores[i] + 1e-9]
    drop = base - cur
    ok = drop <= max_drop + 1e-9
    head = (
        f"{tenant}: {split} score {cur:.3f} vs baseline {base:.3f} from {baseline.source}{scope}: "
    )
    if ok:
        reason = head + (
            f"within the allowed drop of {max_drop:.3f}"
            if drop > 0
            else "no drop"
            if drop == 0
            else f"up {-drop:.3f}"
        )
    else:
        reason = head + f"dropped {drop:.3f}, more than the allowed {max_drop:.3f}"
        if worse:
            reason += (
                f"; {len(worse)} example(s) got worse ({', '.join(worse[:5])}"
                f"{', …' if len(worse) > 5 else ''}) and {len(better)} better"
            )
    if errors:
        reason += f"; {errors} example(s) raised errors (see results.jsonl)"
    changed = (
        None if not (fingerprint and baseline.fingerprint) else fingerprint != baseline.fingerprint
    )
    if not ok and changed is False:
        reason += "; the pipeline files are unchanged, so the model or its provider changed"
    elif not ok and changed:
        reason += "; the pipeline files differ from the baseline's"
    return GateVerdict(
        ok,
        tenant,
        split,
        cur,
        base,
        baseline.source,
        drop,
        max_drop,
        len(scores),
        errors,
        reason,
        worse,
        better,
        changed,
    )


def gate_check(
    tenant_ref: str | Path,
    settings: Settings,
    *,
    against: str | None = None,
    max_drop: float = 0.0,
    split: str = "val",
    out_dir: Path | None = None,
    use_cache: bool = False,
    limit: int | None = None,
    concurrency: int | None = None,
    on_progress: Any = None,
    record_only_if_missing: bool = False,
) -> GateVerdict:
    """Evaluate the tenant's current pipeline and compare with the baseline (no cache by default:
    a cached replay would hide exactly the model update the gate exists to catch)."""
    from fapo.evaluate import evaluate
    from fapo.tenant import load_tenant

    if not 0 <= max_drop <= 1:
        raise FapoError(f"--max-drop {max_drop}: use a score difference between 0 and 1")
    t = load_tenant(tenant_ref, settings)
    try:
        baseline: Baseline | None = resolve_baseline(
            settings, t.name, against, split, t.fingerprint()
        )
    except NoBaseline:
        if not record_only_if_missing:
            raise
        baseline = None
    out = out_dir or settings.runs_dir / t.name / f"check-{split}-{time.strftime('%Y%m%d-%H%M%S')}"
    s = evaluate(
        t,
        split,
        out_dir=out,
        use_cache=use_cache,
        limit=limit,
        concurrency=concurrency,
        on_progress=on_progress,
    )
    if baseline is None:  # --save-baseline on a pipeline never evaluated before: record, pass
        v = GateVerdict(
            True,
            t.name,
            split,
            s.mean,
            None,
            "none",
            0.0,
            max_drop,
            s.n,
            s.errors,
            f"{t.name}: {split} score {s.mean:.3f}; no earlier evaluation of this pipeline to "
            "compare with, so this one becomes the baseline",
        )
    else:
        v = compare(t.name, split, dict(s.scores), s.errors, baseline, max_drop, t.fingerprint())
    v.out_dir, v.wall_s = str(out), s.wall_s
    write_json(out / "verdict.json", v.as_dict())
    return v


def save_baseline(
    path: Path, verdict_or_summary: dict[str, Any], tenant: str, split: str, fingerprint: str
) -> None:
    """A baseline file for `--against` (per-example scores kept for a paired comparison)."""
    write_json(
        path,
        {
            "format": BASELINE_FORMAT,
            "tenant": tenant,
            "split": split,
            "score": verdict_or_summary["score"],
            "scores": verdict_or_summary["scores"],
            "fingerprint": fingerprint,
            "created": time.time(),
        },
    )


def junit_xml(v: GateVerdict) -> str:
    """One test case for the gate; the examples that lost score are listed in its output."""
    suite = ET.Element(
        "testsuite",
        name="fapo check",
        tests="1",
        failures=str(0 if v.ok else 1),
        errors="0",
        time=f"{v.wall_s:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for k in ("tenant", "split", "score", "baseline", "drop", "max_drop", "baseline_source", "n"):
        ET.SubElement(props, "property", name=k, value=str(getattr(v, k)))
    case = ET.SubElement(
        suite,
        "testcase",
        classname=f"fapo.check.{v.tenant}",
        name=f"{v.split} score within {v.max_drop:.3f} of baseline",
        time=f"{v.wall_s:.3f}",
    )
    if not v.ok:
        fail = ET.SubElement(case, "failure", message=v.reason, type="regression")
        fail.text = v.reason + (
            "\nexamples that lost score: " + ", ".join(v.worse[:500]) if v.worse else ""
        )
    ET.SubElement(case, "system-out").text = f"{v.reason}\nartifacts: {v.out_dir}"
    root = ET.Element("testsuites", name="fapo", tests="1", failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: Path, v: GateVerdict) -> None:
    write_text(path, junit_xml(v))

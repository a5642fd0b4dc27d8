"""`report.html`: one self-contained file a person can open from a CI artifact, offline.

Built from the run folder only (via `fapo.report.collect_run`, the same data as report.md). Charts
are inline SVG generated here, the CSS and the few lines of script are inlined, and nothing refers
to the network, so the file renders the same from a laptop, a CI artifact or an air-gapped box.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from fapo.artifacts import write_text
from fapo.report import COST_ROWS, collect_run, cost_ratio, per_example, write_report

STATUS_COLORS = {
    "accepted": "#1a7f37",
    "rejected": "#8c959f",
    "invalid": "#cf222e",
    "baseline": "#0969da",
}
LEVEL_SHORT = {"prompt": "prompt", "parameter": "param", "structure": "struct", "code": "code"}


def write_html(run_dir: Path) -> Path:
    """Write report.md/report.json (through `write_report`) and report.html; return the HTML path."""
    write_report(run_dir)
    data = collect_run(run_dir)
    data["dir"] = str(run_dir)
    path = run_dir / "report.html"
    write_text(path, render_html(data, gather(run_dir, data)))
    return path


# -- data ----------------------------------------------------------------------------------------


def gather(run_dir: Path, data: dict[str, Any]) -> dict[str, Any]:
    """What the HTML needs beyond `collect_run`: trajectory, step failures, spend, pipeline cost."""
    info = data["info"]
    best = info.get("best") or _best_so_far(data["variants"])
    return {
        "best": best,
        "trajectory": trajectory(data["variants"]),
        "steps": step_failures(run_dir, info, best),
        "spend": spend_by_stage(run_dir / "events.jsonl"),
        "per_example": {
            vid: per_example(run_dir / "variants" / vid / "eval" / "val" / "results.jsonl")
            for vid in dict.fromkeys(["v000", best])
        },
        "final_diff": _final_diff(run_dir, best),
    }


def _best_so_far(variants: list[dict[str, Any]]) -> str:
    best = "v000"
    for v in variants:
        if (v["decision"] or {}).get("status") == "accepted":
            best = v["id"]
    return best


def trajectory(variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per variant: its val score (None if never evaluated) and the incumbent after it."""
    points: list[dict[str, Any]] = []
    best: float | None = None
    for v in variants:
        d, p = v["decision"] or {}, v["proposal"] or {}
        val = d.get("candidate_val", v["evals"].get("val", {}).get("mean"))
        if v["id"] == "v000":
            status, best = "baseline", val
        else:
            status = d.get("status", "pending")
            if status == "accepted":
                best = val
        review = v["review"]
        points.append(
            {
                "id": v["id"],
                "level": p.get("level"),
                "status": status,
                "val": val,
                "best_after": best,
                "blocked": bool(review and review.get("blocked")),
            }
        )
    return points


def step_failures(run_dir: Path, info: dict[str, Any], best: str) -> dict[str, Any]:
    """Failing val examples of baseline and final, per step and cause (the attribution ladder).

    The run saves the ladder's val attribution of baseline and final when it finishes
    (`attribution-val.json`; for humans, agents never see val), so the report neither re-runs the
    ladder nor needs the tenant folder. Falls back to the recorded train attribution.
    """
    ends = list(dict.fromkeys(["v000", best]))
    saved = {vid: run_dir / "variants" / vid / "attribution-val.json" for vid in ends}
    split, note = "val", ""
    if not all(p.is_file() for p in saved.values()):
        split, note = "train", "val breakdown not recorded; showing the recorded train attribution"
        saved = {vid: run_dir / "variants" / vid / "attribution.json" for vid in ends}
    return {
        "split": split,
        "note": note,
        "by_variant": {
            vid: json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
            for vid, p in saved.items()
        },
    }


STAGES = {
    "eval": "evaluation",
    "attribution": "attribution",
    "proposal": "proposal (agent)",
    "review": "review",
    "decision": "decision",
    "level": "escalation",
    "stopped": "finish",
}


def spend_by_stage(events_path: Path) -> list[dict[str, Any]]:
    """Deltas of the budget snapshots between consecutive events, summed per stage kind.

    Evaluations are split by split; the built-in agent's train scoring shows under proposal.
    """
    rows: dict[str, dict[str, float]] = {}
    prev = {
        "calls": 0,
        "cache_hits": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "agent_usd": 0.0,
    }
    if not events_path.is_file():
        return []
    for line in events_path.read_text(encoding="utf-8").splitlines():
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            break
        b = ev.get("budget")
        if not b:
            continue
        stage = STAGES.get(ev["kind"], ev["kind"])
        if ev["kind"] == "eval":
            stage = f"evaluation ({str(ev['key']).split('/')[-1]})"
        r = rows.setdefault(
            stage, {"calls": 0, "cache_hits": 0, "tokens": 0, "task_usd": 0.0, "agent_usd": 0.0}
        )
        r["calls"] += b.get("calls", 0) - prev["calls"]
        r["cache_hits"] += b.get("cache_hits", 0) - prev["cache_hits"]
        r["tokens"] += (
            b.get("input_tokens", 0)
            + b.get("output_tokens", 0)
            - prev["input_tokens"]
            - prev["output_tokens"]
        )
        r["task_usd"] += b.get("cost_usd", 0.0) - prev["cost_usd"]
        r["agent_usd"] += b.get("agent_usd", 0.0) - prev["agent_usd"]
        prev = {k: b.get(k, 0) for k in prev}
    return [{"stage": k, **v} for k, v in rows.items()]


def _final_diff(run_dir: Path, best: str) -> str:
    from fapo.artifacts import read_files
    from fapo.workspace import unified_diff

    base = read_files(run_dir / "variants" / "v000" / "files")
    final = read_files(run_dir / "variants" / best / "files")
    if base is None or final is None or best == "v000":
        return ""
    return unified_diff(base, final)


# -- rendering helpers ---------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _f(x: float | None, nd: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _usd(x: float | None) -> str:
    return "—" if x is None else f"${x:.4f}"


def _axis_range(values: list[float]) -> tuple[float, float, float]:
    """A readable y range (lo, hi, tick) for scores in [0, 1]."""
    if not values:
        return 0.0, 1.0, 0.2
    lo = max(0.0, math.floor((min(values) - 0.05) * 10) / 10)
    hi = min(1.0, math.ceil((max(values) + 0.05) * 10) / 10)
    if hi - lo < 0.2:
        lo, hi = max(0.0, lo - 0.1), min(1.0, hi + 0.1)
    span = hi - lo
    tick = 0.2 if span > 0.6 else 0.1 if span > 0.25 else 0.05
    return lo, hi, tick


def trajectory_svg(points: list[dict[str, Any]], width: int = 820, height: int = 320) -> str:
    """Val score of every variant, the incumbent as a step line, accepted ones marked."""
    left, right, top, bottom = 52, 20, 24, 64
    pw, ph = width - left - right, height - top - bottom
    vals = [p["val"] for p in points if p["val"] is not None]
    lo, hi, tick = _axis_range(vals)

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    n = max(len(points), 1)
    xs = [left + pw * (i + 0.5) / n for i in range(len(points))]
    out = [
        f'<svg class="chart" id="trajectory" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="validation score per variant">'
    ]
    t = lo
    while t <= hi + 1e-9:
        yy = y(t)
        out.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{t:.2f}</text>'
        )
        t += tick
    out.append(
        f'<text class="axis-title" x="14" y="{top + ph / 2:.0f}" '
        f'transform="rotate(-90 14 {top + ph / 2:.0f})" text-anchor="middle">val score</text>'
    )
    half = pw / n / 2
    segs: list[str] = []
    for x, p in zip(xs, points, strict=True):
        if p["best_after"] is None:
            continue
        yy = y(p["best_after"])
        segs.append(f"M{x - half:.1f} {yy:.1f}" if not segs else f"H{x:.1f} V{yy:.1f}")
    if segs:
        out.append(f'<path class="best-line" d="{" ".join(segs)} H{xs[-1] + half:.1f}"/>')
    for x, p in zip(xs, points, strict=True):
        color = STATUS_COLORS.get(p["status"], "#8c959f")
        tip = f"{p['id']} · {p['level'] or 'baseline'} · {p['status']} · val {_f(p['val'])}"
        attrs = (
            f'data-variant="{_e(p["id"])}" data-status="{_e(p["status"])}" '
            f'data-level="{_e(p["level"] or "")}"'
        )
        if p["val"] is None:
            yy = top + ph - 6
            label = "blocked" if p["blocked"] else p["status"]
            out.append(
                f'<g class="pt missing" {attrs}><title>{_e(tip)}</title>'
                f'<path d="M{x - 5:.1f} {yy - 5:.1f} l10 10 m0 -10 l-10 10" stroke="{color}" '
                f'stroke-width="2.5"/><text class="pt-label" x="{x:.1f}" y="{yy - 10:.1f}" '
                f'text-anchor="middle" fill="{color}">{_e(label)}</text></g>'
            )
        else:
            yy = y(p["val"])
            filled = p["status"] in ("accepted", "baseline")
            r = 7 if p["status"] == "accepted" else 5.5
            out.append(
                f'<g class="pt" {attrs} data-val="{p["val"]:.3f}"><title>{_e(tip)}</title>'
                f'<circle cx="{x:.1f}" cy="{yy:.1f}" r="{r}" stroke="{color}" stroke-width="2" '
                f'fill="{color if filled else "#fff"}"/>'
                f'<text class="pt-label" x="{x:.1f}" y="{yy - 11:.1f}" text-anchor="middle">'
                f"{p['val']:.3f}{' ★' if p['status'] == 'accepted' else ''}</text></g>"
            )
        out.append(
            f'<text class="xlab" x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">'
            f'{_e(p["id"])}</text><text class="xlev" x="{x:.1f}" y="{top + ph + 33}" '
            f'text-anchor="middle">{_e(LEVEL_SHORT.get(p["level"] or "", "base"))}</text>'
        )
    lx = left
    for name in ("baseline", "accepted", "rejected", "invalid"):
        c = STATUS_COLORS[name]
        out.append(
            f'<circle cx="{lx + 6}" cy="{height - 10}" r="5" fill="{c}"/>'
            f'<text class="legend" x="{lx + 15}" y="{height - 6}">{name}</text>'
        )
        lx += 100
    out.append(
        f'<line class="best-line" x1="{lx}" x2="{lx + 22}" y1="{height - 10}" '
        f'y2="{height - 10}"/><text class="legend" x="{lx + 28}" y="{height - 6}">'
        "incumbent (best so far)</text></svg>"
    )
    return "".join(out)


def bars_svg(
    rows: list[tuple[str, float, float]],
    names: tuple[str, str],
    *,
    per_row: bool = False,
    fmt: str = "{:.0f}",
    svg_id: str = "",
    width: int = 620,
) -> str:
    """Paired horizontal bars (baseline vs final) per row; `per_row` scales each row to its max."""
    bar, gap, left = 12, 14, 170
    height = 26 + len(rows) * (2 * bar + gap)
    top_all = max([max(a, b) for _, a, b in rows] or [1]) or 1
    out = [
        f'<svg class="chart bars" {f"id={chr(34)}{svg_id}{chr(34)} " if svg_id else ""}'
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
    ]
    colors = ("#0969da", "#bf8700")
    for i, (label, a, b) in enumerate(rows):
        y0 = 8 + i * (2 * bar + gap)
        scale = (max(a, b) or 1) if per_row else top_all
        out.append(
            f'<text class="tick" x="{left - 8}" y="{y0 + bar + 4}" text-anchor="end">'
            f"{_e(label)}</text>"
        )
        for j, v in enumerate((a, b)):
            w = (width - left - 90) * (v / scale if scale else 0)
            yy = y0 + j * bar
            out.append(
                f'<rect x="{left}" y="{yy}" width="{max(w, 0.5):.1f}" height="{bar - 2}" '
                f'fill="{colors[j]}" data-series="{_e(names[j])}" data-value="{v:g}"/>'
                f'<text class="bar-val" x="{left + w + 5:.1f}" y="{yy + bar - 3}">'
                f"{_e(fmt.format(v))}</text>"
            )
    ly = height - 6
    out.append(
        f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{colors[0]}"/>'
        f'<text class="legend" x="{left + 14}" y="{ly}">{_e(names[0])}</text>'
        f'<rect x="{left + 110}" y="{ly - 9}" width="10" height="10" fill="{colors[1]}"/>'
        f'<text class="legend" x="{left + 124}" y="{ly}">{_e(names[1])}</text></svg>'
    )
    return "".join(out)


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        cls = (
            "add"
            if line.startswith("+") and not line.startswith("+++")
            else "del"
            if line.startswith("-") and not line.startswith("---")
            else "hunk"
            if line.startswith("@@")
            else "file"
            if line.startswith(("---", "+++"))
            else ""
        )
        lines.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return "\n".join(lines)


# -- the page -----------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1f2328;
margin:0;background:#f6f8fa}main{max-width:1180px;margin:0 auto;padding:20px 28px 60px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:30px 0 10px;border-bottom:1px solid #d0d7de;
padding-bottom:4px}.meta{color:#57606a}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:20px}.card span{color:#57606a;font-size:12px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:6px 16px 14px;margin:14px 0}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #eaeef2;
padding:5px 7px;text-align:left;vertical-align:top}th{background:#f6f8fa}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums}tr.accepted td{background:#dafbe1}tr.invalid td{color:#82071e}
.chart text{font-size:11px;fill:#1f2328}.chart .grid{stroke:#eaeef2}.chart .tick{fill:#57606a}
.best-line{fill:none;stroke:#1a7f37;stroke-width:2;stroke-dasharray:5 3}.xlev{fill:#57606a}
.pt-label{font-weight:600}.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;
border-radius:6px}pre.diff{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}
pre.diff .add{color:#116329;background:#dafbe1}pre.diff .del{color:#82071e;background:#ffebe9}
pre.diff .hunk{color:#0550ae}pre.diff .file{font-weight:600}.small{font-size:12px;color:#57606a}
"""

SCRIPT = """
document.querySelectorAll('svg.chart').forEach(function(s){var b=s.getBBox();
s.setAttribute('data-rendered',Math.round(b.width)+'x'+Math.round(b.height));});
document.body.setAttribute('data-ready','1');
"""


def _table(
    head: list[str],
    rows: list[list[str]],
    *,
    table_id: str = "",
    num: set[int] | None = None,
    row_attrs: list[str] | None = None,
) -> str:
    num = num or set()
    h = "".join(f"<th{' class=num' if i in num else ''}>{c}</th>" for i, c in enumerate(head))
    body = []
    for k, r in enumerate(rows):
        tds = "".join(f"<td{' class=num' if i in num else ''}>{c}</td>" for i, c in enumerate(r))
        body.append(f"<tr {row_attrs[k] if row_attrs else ''}>{tds}</tr>")
    tid = f' id="{table_id}"' if table_id else ""
    return f"<table{tid}><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _variant_rows(data: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    rows, attrs = [], []
    for v in data["variants"]:
        p, r, d = v["proposal"] or {}, v["review"], v["decision"] or {}
        st = d.get("stats") or {}
        val = d.get("candidate_val", v["evals"].get("val", {}).get("mean"))
        if v["id"] == "v000":
            status, review, change = "baseline", "—", "baseline (the tenant as it was)"
        else:
            status = d.get("status", "pending")
            change = _e(p.get("rationale") or p.get("failure") or "")
            if p.get("changes"):
                change += f'<div class="small">files: {_e(", ".join(p["changes"]))}</div>'
            if r is None:
                review = "—"
            elif r.get("blocked"):
                why = [c["reason"] for c in r.get("checks", []) if not c.get("passed")]
                av = r.get("agent_verdict") or {}
                if av and not av.get("approve"):
                    why += av.get("reasons", [])
                review = "blocked: " + _e("; ".join(why))
            else:
                n = len(r.get("checks", []))
                review = (
                    f"passed ({n} checks{', reviewer approved' if r.get('agent_verdict') else ''})"
                )
        decision = ("★ accepted" if status == "accepted" else status) + (
            f'<div class="small">{_e(d.get("reason", ""))}</div>' if d.get("reason") else ""
        )
        ci = (
            f"[{st['ci_low']:+.3f}, {st['ci_high']:+.3f}]"
            if "ci_low" in st and "ci_high" in st
            else ""
        )
        wlt = f"{st['wins']}/{st['losses']}/{st['ties']}" if "wins" in st else ""
        rows.append(
            [
                _e(v["id"]),
                _e(p.get("parent", "")),
                _e(p.get("level") or "—"),
                change,
                review,
                decision,
                _f(val),
                f"{_f(st.get('mean_diff'))} {ci}".strip() if st else "",
                _f(st.get("p_value"), 4) if st else "",
                wlt,
                _usd(p.get("agent_usd")),
            ]
        )
        attrs.append(f'class="{_e(status)}" data-variant="{_e(v["id"])}"')
    return rows, attrs


def _step_section(steps: dict[str, Any], best: str) -> str:
    by = steps["by_variant"]
    base, final = by.get("v000"), by.get(best)
    counts: dict[str, list[int]] = {}
    causes: dict[tuple[str, str, str], list[int]] = {}
    for j, rep in enumerate((base, final)):
        for c in (rep or {}).get("clusters", []):
            counts.setdefault(c["step"], [0, 0])[j] += len(c["example_ids"])
            causes.setdefault((c["step"], c["cause"], c["level"]), [0, 0])[j] += len(
                c["example_ids"]
            )
    parts = []
    if steps.get("note"):
        parts.append(f'<p class="warn">{_e(steps["note"])}</p>')
    total = [(rep or {}).get("failures") for rep in (base, final)]
    n = [(rep or {}).get("examples") for rep in (base, final)]
    parts.append(
        f"<p>Failing {steps['split']} examples: baseline {total[0]} of {n[0]}, "
        f"final ({_e(best)}) {total[1] if final else '—'} of {n[1] if final else '—'}. "
        "Each failure is blamed on the first step the attribution ladder flags.</p>"
    )
    if counts:
        parts.append(
            bars_svg(
                [(s, a, b) for s, (a, b) in counts.items()],
                ("baseline v000", f"final {best}"),
                svg_id="step-failures",
            )
        )
        rows = [[_e(s), _e(c), _e(lvl), str(a), str(b)] for (s, c, lvl), (a, b) in causes.items()]
        parts.append(
            _table(
                ["step", "cause", "level", "baseline", "final"],
                rows,
                table_id="step-table",
                num={3, 4},
            )
        )
    else:
        parts.append("<p>No failures to break down.</p>")
    return "".join(parts)


def _cost_section(pe: dict[str, Any], best: str) -> str:
    b, f = pe.get("v000"), pe.get(best)
    if not b or not f:
        return "<p>Per-example records are missing for the baseline or the final variant.</p>"
    rows, trs = [], []
    for key, label, nd in COST_ROWS:
        ratio = cost_ratio(b[key], f[key])
        flag = ' <b class="warn">≥2×</b>' if ratio >= 2 and math.isfinite(ratio) else ""
        rows.append(
            [
                label,
                f"{b[key]:.{nd}f}",
                f"{f[key]:.{nd}f}",
                (f"{ratio:.2f}×" if math.isfinite(ratio) else "new cost") + flag,
            ]
        )
        trs.append((label, b[key], f[key]))
    return (
        _table(
            ["per val example", "baseline v000", f"final {_e(best)}", "final / baseline"],
            rows,
            table_id="cost-table",
            num={1, 2, 3},
        )
        + bars_svg(
            trs[:3],
            ("baseline v000", f"final {best}"),
            per_row=True,
            fmt="{:.1f}",
            svg_id="cost-bars",
        )
        + '<p class="small">Calls and tokens count cached calls too (what the pipeline costs to '
        "run); latency is as measured in this run, where cached calls return faster.</p>"
    )


def _spend_section(info: dict[str, Any], spend: list[dict[str, Any]]) -> str:
    s = info.get("spent") or {}
    accepted = info.get("accepted") or []
    rows = [
        [
            _e(r["stage"]),
            str(int(r["calls"])),
            str(int(r["cache_hits"])),
            str(int(r["tokens"])),
            _usd(r["task_usd"]),
            _usd(r["agent_usd"]),
        ]
        for r in spend
    ]
    total_usd = s.get("usd", s.get("cost_usd", 0.0) + s.get("agent_usd", 0.0))
    per = (
        f"{_usd(total_usd / len(accepted))} and {s.get('calls', 0) / len(accepted):.0f} task-model "
        "calls per accepted improvement"
        if accepted
        else "no accepted improvement"
    )
    return (
        f"<p>Task model {_usd(s.get('cost_usd'))} · agent {_usd(s.get('agent_usd'))} · "
        f"total {_usd(total_usd)} · {s.get('calls', 0)} calls issued, {s.get('cache_hits', 0)} "
        f"served from cache · wall-clock {s.get('elapsed_s', 0):.1f} s · <b>{per}</b>.</p>"
        + _table(
            ["stage", "calls issued", "cache hits", "tokens", "task model", "agent"],
            rows,
            table_id="spend-table",
            num={1, 2, 3, 4, 5},
        )
    )


def render_html(data: dict[str, Any], extra: dict[str, Any]) -> str:
    info = data["info"]
    best = extra["best"]
    task_model = info["spec"]["models"]["task"]
    sim = task_model.startswith("sim:")
    val, test = info.get("val") or {}, info.get("test") or {}
    base_val = val.get(
        "v000",
        (data["variants"][0]["evals"].get("val") or {}).get("mean") if data["variants"] else None,
    )
    final_val = val.get(
        best, next((p["val"] for p in extra["trajectory"] if p["id"] == best), None)
    )
    gap = (final_val - test[best]) if final_val is not None and best in test else None
    accepted = info.get("accepted") or [
        p["id"] for p in extra["trajectory"] if p["status"] == "accepted"
    ]
    cards = [
        ("baseline val", _f(base_val)),
        (f"final val ({best})", _f(final_val)),
        ("gain on val", _f(final_val - base_val) if None not in (final_val, base_val) else "—"),
        ("baseline test", _f(test.get("v000"))),
        ("final test", _f(test.get(best))),
        ("val→test gap", f"{gap:+.3f}" if gap is not None else "—"),
        ("candidates / accepted", f"{len(data['variants']) - 1} / {len(accepted)}"),
        ("spend", _usd((info.get("spent") or {}).get("usd"))),
    ]
    card_html = "".join(
        f'<div class="card" data-card="{_e(k)}"><span>{_e(k)}</span><b>{_e(v)}</b></div>'
        for k, v in cards
    )
    rows, attrs = _variant_rows(data)
    vtable = _table(
        [
            "variant",
            "parent",
            "level",
            "change and rationale",
            "review",
            "decision",
            "val",
            "gain [95% CI]",
            "p",
            "W/L/T",
            "agent",
        ],
        rows,
        table_id="variants",
        num={6, 7, 8},
        row_attrs=attrs,
    )
    levels = "".join(
        f"<li>{_e(e['from'])} → {_e(e['to'])}: {_e(e['why'])}</li>" for e in data.get("levels", [])
    )
    model_note = " — the offline simulated model, not an LLM" if sim else ""
    running = (
        ""
        if info.get("status") == "finished"
        else (
            '<p class="warn">This run has not finished: the numbers below are what it recorded so far.</p>'
        )
    )
    diff = extra["final_diff"]
    gap_text = (
        ""
        if gap is None
        else f"<p>Validation→test gap of the final variant: <b>{gap:+.3f}</b> (positive means "
        "validation overestimates; the sealed test split was evaluated once, at the end, "
        "for the baseline and the final variant only).</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fapo run {_e(info["run_id"])} · {_e(info["tenant"])}</title><style>{CSS}</style></head>
<body><main>
<h1>fapo run {_e(info["run_id"])} · tenant <code>{_e(info["tenant"])}</code></h1>
<p class="meta">Status <b>{_e(info.get("status"))}</b>{" — " + _e(info.get("stop_reason")) if info.get("stop_reason") else ""}.
Agent <code>{_e(info.get("agent"))}</code> · task model <code>{_e(task_model)}</code>{_e(model_note)}.
{"Run-level error control: " + _e((info.get("error_control") or {}).get("text", "")) + "." if info.get("error_control") else ""}</p>
{running}<div class="cards">{card_html}</div>
<section><h2>Score trajectory (val)</h2>
{trajectory_svg(extra["trajectory"])}
<p class="small">Each point is a candidate's validation score; ★ marks accepted changes, × a
candidate that never ran (blocked by review or no proposal). Labels under the axis give the level.</p>
{f"<h3>Escalations</h3><ul>{levels}</ul>" if levels else ""}</section>
<section><h2>Every variant</h2>{vtable}</section>
<section><h2>Failures per step: baseline vs final ({_e(extra["steps"]["split"])})</h2>
{_step_section(extra["steps"], best)}</section>
<section><h2>Result and val→test gap</h2>
{_table(["variant", "val", "test"], [[_e(v) + (" (baseline)" if v == "v000" else " (final)"), _f(val.get(v)), _f(test.get(v))] for v in dict.fromkeys(["v000", best])], table_id="result-table", num={1, 2})}
{gap_text}</section>
<section><h2>Pipeline cost per example: baseline vs final</h2>
{_cost_section(extra["per_example"], best)}</section>
<section><h2>Spend by stage</h2>{_spend_section(info, extra["spend"])}</section>
{_findings_section(data["variants"])}
<section><h2>Final change (v000 → {_e(best)})</h2>
{f'<pre class="diff" id="final-diff">{_diff_html(diff)}</pre>' if diff else "<p>No change: the baseline is still the best variant.</p>"}
</section>
<p class="small">Built by fapo from {_e(data.get("dir", ""))} ({data.get("events", 0)} events). The
markdown version is report.md next to this file.</p>
</main><script>{SCRIPT}</script></body></html>
"""


def _findings_section(variants: list[dict[str, Any]]) -> str:
    """briefs (issue 16): every denial, refused attempt and review finding, one row each."""
    from fapo.findings import run_findings

    rows = [
        [
            _e(where),
            _e(f.severity.value),
            _e(f"{f.role} ({f.agent})"),
            _e(f.kind.value),
            _e(f.detail),
        ]
        for where, f in run_findings(variants)
    ]
    if not rows:
        return ""
    table = _table(["where", "severity", "role", "kind", "detail"], rows, table_id="findings")
    return (
        f"<section><h2>Findings: denials, refused attempts, review findings</h2>{table}</section>"
    )

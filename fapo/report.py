"""`report.md` of a run, built only from its artifact folder (so it can be rebuilt any time)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fapo.artifacts import read_json, write_text
from fapo.events import EventLog


def _maybe(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def collect_run(run_dir: Path) -> dict[str, Any]:
    """Everything a report needs, as plain data (also used by the HTML report and `status`)."""
    info = read_json(run_dir / "run.json")
    log = EventLog(run_dir / "events.jsonl")
    variants = []
    for vdir in sorted((run_dir / "variants").glob("v*")):
        vid = vdir.name
        prop = next(
            (e["data"] for e in log.events if e["kind"] == "proposal" and e["key"] == vid), None
        )
        evals = {}
        for split in ("train", "val", "test"):
            s = _maybe(vdir / "eval" / split / "summary.json")
            if s:
                s.pop("scores", None)
                evals[split] = s
        variants.append(
            {
                "id": vid,
                "proposal": prop,
                "review": _maybe(vdir / "review.json"),
                "decision": _maybe(vdir / "decision.json"),
                "evals": evals,
                "attribution": _maybe(vdir / "attribution.json"),
                "diff": (vdir / "diff.patch").read_text(encoding="utf-8")
                if (vdir / "diff.patch").is_file()
                else "",
            }
        )
    levels = [e["data"] for e in log.events if e["kind"] == "level"]
    from fapo.specificity import flag_variants  # issue 19: benchmark-specific changes

    terms = (info.get("spec") or {}).get("benchmark_specific") or []
    flags = [f.model_dump() for f in flag_variants(variants[1:], terms)]
    return {
        "info": info,
        "variants": variants,
        "levels": levels,
        "events": len(log.events),
        "benchmark_specific": flags,
    }


def _fmt(x: float | None, nd: int = 3) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _val_cell(full: float | None, decision: dict[str, Any]) -> str:
    """The candidate's val mean; for one stopped at an earlier look, its mean on the examples
    that look evaluated, marked n/N (sequential acceptance, fapo/sequential.py)."""
    st = decision.get("stats", {})
    if full is None and decision.get("candidate_val") is not None and "n_total" in st:
        return f"{decision['candidate_val']:.3f} ({st['n']}/{st['n_total']})"
    return _fmt(full)


def per_example(results: Path) -> dict[str, float] | None:
    """Mean latency, model calls (cache hits included), tokens and USD per example record.

    Read from the call records, not the summary, so cached calls still count their tokens: the
    point is what the pipeline costs to run, not what this run happened to pay. report.md and
    report.html both show these numbers, so they cannot disagree.
    """
    if not results.is_file():
        return None
    n = 0
    latency = calls = tokens = cost = 0.0
    for line in results.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        n += 1
        latency += rec.get("latency_s") or 0.0
        for s in rec.get("steps", []):
            for c in s.get("calls", []):
                calls += 1
                tokens += (c.get("input_tokens") or 0) + (c.get("output_tokens") or 0)
                cost += c.get("cost_usd") or 0.0
    if not n:
        return None
    return {
        "latency_ms": 1000 * latency / n,
        "calls": calls / n,
        "tokens": tokens / n,
        "usd": cost / n,
        "records": n,
    }


#: (key, label, decimals) of the pipeline-cost rows, in the order both reports show them.
COST_ROWS = (
    ("latency_ms", "latency (ms, mean)", 1),
    ("calls", "model calls", 2),
    ("tokens", "tokens", 1),
    ("usd", "USD", 6),
)


def cost_ratio(base: float, final: float) -> float:
    """final / baseline; 1 when both are 0, inf when only the final variant costs anything."""
    if base:
        return final / base
    return 1.0 if final == base else math.inf


def clip(text: str, width: int) -> str:
    """At most `width` characters on one line, cut at a word boundary and marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.") + "…"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (a `|` would start a new column)."""
    return text.replace("|", "\\|")


def render_markdown(data: dict[str, Any]) -> str:
    info, variants = data["info"], data["variants"]
    by_id = {v["id"]: v for v in variants}
    best = info.get("best", "v000")
    base, final = by_id.get("v000"), by_id.get(best)
    sim = info["spec"]["models"]["task"].startswith("sim:")
    spent = info.get("spent", {})
    accepted = info.get("accepted", [])
    L = [f"# fapo run {info['run_id']} · tenant `{info['tenant']}`", ""]
    L.append(f"Status: **{info.get('status')}** — stopped because: {info.get('stop_reason', '—')}.")
    L.append(
        f"Agent: `{info.get('agent')}`. Task model: `{info['spec']['models']['task']}`"
        + (" (the offline simulated model, not an LLM)." if sim else ".")
    )
    if ec := info.get("error_control"):  # sequential: the run-level error rate it guarantees
        L.append(f"Run-level error control: {ec['text']}.")
    L += ["", "## Result", "", "| | val | test |", "|---|---:|---:|"]
    for vid in dict.fromkeys(["v000", best]):
        L.append(
            f"| {vid}{' (baseline)' if vid == 'v000' else ' (final)'} | "
            f"{_fmt(info.get('val', {}).get(vid))} | {_fmt(info.get('test', {}).get(vid))} |"
        )
    if best in info.get("test", {}) and best in info.get("val", {}):
        gap = info["val"][best] - info["test"][best]
        L.append(
            f"\nValidation→test gap of the final variant: {gap:+.3f} "
            "(positive = validation overestimates; the test split was evaluated once, at the end)."
        )
    L += [
        "",
        "## Trajectory",
        "",
        "| variant | level | change | review | decision | val | gain | p |",
        "|---|---|---|---|---|---:|---:|---:|",
    ]
    for v in variants:
        if v["id"] == "v000":
            L.append(
                f"| v000 | — | baseline | — | — | {_fmt(v['evals'].get('val', {}).get('mean'))} | | |"
            )
            continue
        p, r, d = v["proposal"] or {}, v["review"], v["decision"] or {}
        st = d.get("stats", {})
        review = "—" if r is None else ("blocked" if r["blocked"] else "passed")
        mark = "**accepted**" if d.get("status") == "accepted" else d.get("status", "—")
        L.append(
            f"| {v['id']} | {p.get('level', '—')} | "
            f"{_cell(clip(p.get('rationale') or p.get('failure') or '', 70))} | "
            f"{review} | {mark} | {_val_cell(v['evals'].get('val', {}).get('mean'), d)} | "
            f"{_fmt(st.get('mean_diff'))} | {_fmt(st.get('p_value'), 4)} |"
        )
    L += ["", "## Decisions and reasons", ""]
    for v in variants[1:]:
        d = v["decision"] or {}
        L.append(
            f"- **{v['id']}** ({(v['proposal'] or {}).get('level', '?')}): "
            f"{d.get('status', '?')} — {d.get('reason', '')}"
        )
    # issue 19: changes that encode the benchmark's verifier logic (tenant.yaml benchmark_specific)
    flags = data.get("benchmark_specific") or []
    if flags:
        L += ["", "## Benchmark-specific changes", ""]
        L += [
            f"- **{f['variant']}** ({f['level']}, "
            f"{(by_id[f['variant']]['decision'] or {}).get('status', '?')}) "
            f"names the benchmark's own verifiers: {', '.join(f['terms'][:8])} — a repair for "
            "those instruction types, not a general improvement"
            for f in flags
        ]
    from fapo.findings import report_lines  # briefs: issue 16

    L += report_lines(variants)
    if data["levels"]:
        L += ["", "## Escalations", ""] + [
            f"- {e['from']} → {e['to']}: {e['why']}" for e in data["levels"]
        ]
    L += ["", "## Attribution (train split)", ""]
    for v in variants:
        a = v["attribution"]
        if not a:
            continue
        L.append(f"**{v['id']}**: {a['failures']} of {a['examples']} train examples fail")
        for c in a["clusters"][:6]:
            L.append(
                f"- `{c['step']}` · {c['cause']} · level {c['level']} · "
                f"conf {c['confidence']:.2f} · {len(c['example_ids'])} examples"
            )
        L.append("")
    L += [
        "## Per-step failures: baseline vs final (val)",
        "",
        "| step | baseline errors | final errors | baseline p50 ms | final p50 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    bsteps = (base or {}).get("evals", {}).get("val", {}).get("steps", {})
    fsteps = (final or {}).get("evals", {}).get("val", {}).get("steps", {})
    for step in dict.fromkeys([*bsteps, *fsteps]):
        b, f = bsteps.get(step, {}), fsteps.get(step, {})
        L.append(
            f"| {step} | {b.get('errors', '—')} | {f.get('errors', '—')} | "
            f"{_fmt(b.get('p50_s', 0) * 1000 if b else None, 1)} | "
            f"{_fmt(f.get('p50_s', 0) * 1000 if f else None, 1)} |"
        )
    run_dir = Path(data.get("dir", ""))
    pb = per_example(run_dir / "variants" / "v000" / "eval" / "val" / "results.jsonl")
    pf = per_example(run_dir / "variants" / best / "eval" / "val" / "results.jsonl")
    if pb and pf:
        L += [
            "",
            "## Cost of the pipeline per example (val): baseline vs final",
            "",
            "| per val example | baseline | final | final / baseline |",
            "|---|---:|---:|---:|",
        ]
        for key, label, nd in COST_ROWS:
            r = cost_ratio(pb[key], pf[key])
            shown = f"{r:.2f}×" if math.isfinite(r) else "new cost"
            L.append(f"| {label} | {pb[key]:.{nd}f} | {pf[key]:.{nd}f} | {shown} |")
        L.append(
            "\nCalls and tokens count cached calls too (what the pipeline costs to run); latency "
            "is as measured in this run, where cached calls return faster."
        )
    L += [
        "",
        "## Spend",
        "",
        f"- Task model: {spent.get('calls', 0)} calls issued ({spent.get('cache_hits', 0)} served "
        f"from cache), {spent.get('input_tokens', 0) + spent.get('output_tokens', 0)} tokens, "
        f"${spent.get('cost_usd', 0):.4f}",
        f"- Agent: ${spent.get('agent_usd', 0):.4f}",
        f"- Candidates proposed: {spent.get('variants', 0)}; accepted: {len(accepted)}",
        f"- Wall-clock: {spent.get('elapsed_s', 0):.1f} s",
    ]
    if accepted:
        L.append(
            f"- Cost per accepted improvement: ${spent.get('usd', 0) / len(accepted):.4f} and "
            f"{spent.get('calls', 0) / len(accepted):.0f} task-model calls"
        )
    if final and final["id"] != "v000":
        from fapo.workspace import unified_diff

        base_files = _files(run_dir, "v000")
        final_files = _files(run_dir, final["id"])
        if base_files is not None and final_files is not None:
            L += [
                "",
                "## Final change (baseline → final)",
                "",
                "```diff",
                unified_diff(base_files, final_files).rstrip(),
                "```",
            ]
    return "\n".join(L) + "\n"


def _files(run_dir: Path, vid: str) -> dict[str, str] | None:
    from fapo.artifacts import read_files

    return read_files(run_dir / "variants" / vid / "files")


def write_report(run_dir: Path) -> Path:
    data = collect_run(run_dir)
    data["dir"] = str(run_dir)
    path = run_dir / "report.md"
    write_text(path, render_markdown(data))
    write_text(run_dir / "report.json", json.dumps(data, indent=1, default=str))
    return path

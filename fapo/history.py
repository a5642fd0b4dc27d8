"""Earlier attempts as later briefs see them: outcome, diff, val effect as counts, plateau."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fapo.agents.prompts import PLATEAU_RULE
from fapo.attribute import iter_results
from fapo.records import DecisionRecord, Level, ProposalRecord, Status
from fapo.workspace import LeakCheck

#: Two evaluated attempts in a row without a gain: measured on the demo tenants, a third
#: variant of the same idea was rejected too, so the brief says so.
PLATEAU_AFTER = 2


def plateau(history: Sequence[dict[str, Any]], level: Level) -> str | None:
    """PLATEAU_RULE when the last PLATEAU_AFTER attempts at `level` were evaluated and
    rejected (no significant gain), else None."""
    n = 0
    for h in reversed(history):
        if h.get("level") != level or h.get("outcome") != Status.REJECTED.value:
            break
        n += 1
    return PLATEAU_RULE.format(n=n) if n >= PLATEAU_AFTER else None


def enrich_history(
    history: Sequence[dict[str, Any]], variants: Path, leak_index: LeakCheck | None
) -> list[dict[str, Any]]:
    """Each earlier attempt with its diff (cut to DIFF_CHARS; withheld when it would reveal
    sealed text) and its per-example effect on val against its parent — as counts only."""
    out = []
    for h in history:
        vid, parent = h.get("variant"), h.get("parent")
        entry = dict(h)
        if vid:
            patch = variants / str(vid) / "diff.patch"
            if patch.is_file():
                entry["diff"] = _safe_diff(patch.read_text(encoding="utf-8"), leak_index)
            if parent:
                effect = val_effect(
                    variants / str(vid) / "eval" / "val" / "results.jsonl",
                    variants / str(parent) / "eval" / "val" / "results.jsonl",
                )
                if effect:
                    entry["val_effect"] = effect
        out.append(entry)
    return out


DIFF_CHARS = 3000


def _safe_diff(diff: str, leak_index: LeakCheck | None) -> str:
    if leak_index is not None:
        added = "\n".join(
            ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")
        )
        if leak_index.leaks(added, ""):
            return "(diff withheld: it copied validation/test text and was blocked for it)"
    if len(diff) > DIFF_CHARS:
        return diff[:DIFF_CHARS] + f"\n[... {len(diff) - DIFF_CHARS} characters cut]\n"
    return diff


def val_effect(candidate: Path, parent: Path) -> dict[str, int] | None:
    """{better, worse, unchanged}: validation examples whose mean score rose, fell or stayed,
    candidate vs. parent. Counts only — never ids, inputs, outputs or labels: the agent must
    not see validation data, and an id chosen by a tenant may name its content (a CVE number,
    a document title)."""
    if not candidate.is_file() or not parent.is_file():
        return None
    a, b = _mean_scores(candidate), _mean_scores(parent)
    counts = {"better": 0, "worse": 0, "unchanged": 0}
    for ex_id in a.keys() & b.keys():
        d = a[ex_id] - b[ex_id]
        counts["better" if d > 1e-9 else "worse" if d < -1e-9 else "unchanged"] += 1
    return counts


def _mean_scores(path: Path) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for rec in iter_results(path):
        scores.setdefault(str(rec["id"]), []).append(float(rec.get("score") or 0.0))
    return {k: sum(v) / len(v) for k, v in scores.items()}


def history_entry(prop: ProposalRecord, decision: DecisionRecord) -> dict[str, Any]:
    """What later briefs are told about this attempt (`Brief.history`)."""
    c = prop.cluster
    return {
        "variant": prop.variant,
        "parent": prop.parent,
        "level": prop.level,
        "rationale": prop.rationale,
        "cluster": f"{c.step}: {c.cause}" if c else None,
        "outcome": decision.status.value,
        "reason": decision.reason,
    }

"""Attribute failures to a step, a cause and the level that can fix them.

A deterministic ladder runs over each failing train example, in step order, first match wins:
step error → truncated output → tenant step checks → declared output format → gold present but
badly formatted → unexplained. Failures are grouped into clusters. Unexplained ones may be passed
to the agent's `attribute` (an LLM agent can cluster them; the built-in one declines).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fapo.agents.base import Agent, AttributionRequest, Cluster
from fapo.artifacts import copy_transcripts
from fapo.records import AgentAttribution, Attribution, Example, Level
from fapo.tenant import Tenant

FAIL_BELOW = 0.999

FIXES = {
    "output truncated": "raise the step's max_tokens (parameter) or ask for a shorter output",
    "model call failed": "check the provider/rate limits; the step's calls raised",
    "step raised": "the step's code raised; fix the chain (structure)",
    "declared format": "instruct the step to emit exactly the declared format",
    "gold present": "ask for only the final answer, no explanation or extra words",
    "unexplained": "inspect the traces; the final step answered wrongly",
}


@dataclass(frozen=True)
class Cause:
    step: str
    cause: str
    level: str
    confidence: float


def iter_results(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _norm(text: Any) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", str(text).lower()).split())


def gold_strings(label: Any) -> list[str]:
    """Strings that count as the gold answer, from common label shapes."""
    if isinstance(label, str):
        return [label]
    if isinstance(label, list | tuple):
        return [str(x) for x in label if isinstance(x, str | int | float)]
    if isinstance(label, dict):
        for key in ("answer", "answers", "label", "target", "gold"):
            if key in label:
                return gold_strings(label[key])
    return []


def _format_problem(value: Any, spec: Any) -> str | None:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if spec.format == "json":
        try:
            json.loads(text)
        except (TypeError, ValueError):
            return "json"
    if spec.format == "one_line" and "\n" in text.strip():
        return "one_line"
    if spec.format == "number":
        try:
            float(text.strip())
        except ValueError:
            return "number"
    if spec.pattern and not re.fullmatch(spec.pattern, text.strip(), flags=re.S):
        return f"pattern {spec.pattern}"
    if spec.max_words and len(text.split()) > spec.max_words:
        return f"max {spec.max_words} words"
    return None


def classify(tenant: Tenant, record: dict[str, Any], example: Example) -> Cause:
    """The first failing step of one failing example, and why (the ladder)."""
    state: dict[str, Any] = dict(record["inputs"])
    pred_key = tenant.spec.prediction
    final_step = None
    for s in record["steps"]:
        if isinstance(s.get("update"), dict) and pred_key in s["update"]:
            final_step = s["step"]
    final_step = final_step or (record["steps"][-1]["step"] if record["steps"] else "?")
    checks_by_step: dict[str, list[Any]] = {}
    for c in tenant.checks:
        checks_by_step.setdefault(c.step, []).append(c)
    steps = record["steps"]
    for i, s in enumerate(steps):
        name = s["step"]
        calls = s.get("calls") or []
        if s.get("error"):
            if any(c.get("error") for c in calls):
                return Cause(name, "model call failed", "parameter", 0.5)
            return Cause(name, f"step raised {s['error'].split(':')[0]}", "structure", 0.7)
        if any(c.get("finish_reason") == "length" for c in calls):
            return Cause(name, "output truncated (finish reason length)", "parameter", 0.9)
        if isinstance(s.get("update"), dict):
            state.update(s["update"])
        # A step's checks judge it after the nodes a structural transform inserted right
        # after it (post_X, hop_X), so a repaired output is not blamed on X.
        after = dict(state)
        for nxt in steps[i + 1 :]:
            if not re.fullmatch(rf"(post|hop)_{re.escape(name)}(_\d+)?", nxt["step"]):
                break
            if isinstance(nxt.get("update"), dict):
                after.update(nxt["update"])
        for chk in checks_by_step.get(name, []):
            try:
                failure = chk.run(example, after)
            except Exception as exc:  # a broken check must not hide the evidence
                return Cause(
                    name, f"check {chk.name} raised {type(exc).__name__}", "structure", 0.1
                )
            if failure is not None:
                return Cause(name, failure.cause, failure.level, failure.confidence)
        spec = tenant.spec.steps.get(name)
        if spec is not None and isinstance(s.get("update"), dict):
            key = spec.output or (pred_key if pred_key in s["update"] else None)
            if key and key in s["update"]:
                problem = _format_problem(s["update"][key], spec)
                if problem:
                    return Cause(name, f"output breaks declared format ({problem})", "prompt", 0.8)
    if record.get("error"):
        return Cause(record["error"].get("step") or final_step, "step raised", "structure", 0.5)
    pred = _norm(record.get("prediction"))
    golds = [_norm(g) for g in gold_strings(example.label)]
    if pred and any(g and g != pred and re.search(rf"\b{re.escape(g)}\b", pred) for g in golds):
        return Cause(final_step, "gold present but output badly formatted", "prompt", 0.85)
    return Cause(final_step, "unexplained", "prompt", 0.3)


def _fix_for(cause: str) -> str:
    for prefix, fix in FIXES.items():
        if cause.startswith(prefix) or prefix in cause:
            return fix
    return f"make step pass: {cause}"


def attribute(tenant: Tenant, results: Path, split: str = "train") -> dict[str, Any]:
    """Cluster the failures recorded in `results` (a train results.jsonl of the incumbent)."""
    examples = {ex.id: ex for ex in tenant.examples(split)}
    groups: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    n = failures = 0
    seen: set[str] = set()
    for rec in iter_results(results):
        if rec["id"] in seen:  # repeats: attribute the first repeat of each example
            continue
        seen.add(rec["id"])
        n += 1
        if rec["score"] >= FAIL_BELOW:
            continue
        failures += 1
        c = classify(tenant, rec, examples[rec["id"]])
        groups.setdefault((c.step, c.cause, c.level), []).append((rec["id"], c.confidence))
    clusters = [
        Cluster(
            step=step,
            cause=cause,
            level=level,
            confidence=round(sum(c for _, c in members) / len(members), 3),
            example_ids=sorted(i for i, _ in members),
            suggested_fix=_fix_for(cause),
        )
        for (step, cause, level), members in groups.items()
    ]
    clusters.sort(key=lambda c: (-len(c.example_ids), -c.confidence, c.step))
    return {
        "split": split,
        "examples": n,
        "failures": failures,
        "clusters": [c.model_dump() for c in clusters],
    }


def traces_for(
    results: Path, ids: Sequence[str], limit: int = 5, max_chars: int = 1500
) -> list[dict[str, Any]]:
    """Compact train traces for a brief: steps with their updates and model outputs, label, score."""
    wanted = set(ids[:limit])
    out = []
    for rec in iter_results(results):
        if rec["id"] in wanted and rec["repeat"] == 0:
            steps = []
            for s in rec["steps"]:
                steps.append(
                    {
                        "step": s["step"],
                        "error": s.get("error"),
                        "update": json.dumps(s.get("update"), default=str)[:max_chars],
                        "calls": [
                            {
                                "prompt": str(c["messages"][-1]["content"])[:max_chars]
                                if c["messages"]
                                else "",
                                "output": str(c.get("output"))[:max_chars],
                                "finish_reason": c.get("finish_reason"),
                            }
                            for c in s.get("calls", [])
                        ],
                    }
                )
            out.append(
                {
                    "id": rec["id"],
                    "inputs": rec["inputs"],
                    "label": rec["label"],
                    "prediction": rec["prediction"],
                    "score": rec["score"],
                    "steps": steps,
                }
            )
    return out


# -- typed stage entry points (the loop calls these) ---------------------------------------------


def ladder(tenant: Tenant, results: Path, split: str = "train") -> Attribution:
    """The deterministic ladder's clusters as a typed record."""
    return Attribution.model_validate(attribute(tenant, results, split))


def with_agent(
    report: Attribution,
    agent: Agent,
    *,
    tenant: str,
    steps: Sequence[str],
    levels: Sequence[Level],
    results: Path,
    transcripts: Path,
) -> Attribution:
    """The agent half: ask `agent` to cluster the failures the ladder left unexplained.

    Its clusters replace the unexplained ones (largest first); its transcripts are copied to
    `transcripts`. Returns `report` unchanged when nothing is unexplained."""
    unexplained = [c for c in report.clusters if c.cause == "unexplained"]
    if not unexplained:
        return report
    ids = [i for c in unexplained for i in c.example_ids]
    req = AttributionRequest(
        tenant=tenant,
        steps=list(steps),
        levels=list(levels),
        failures=traces_for(results, ids, limit=12),
    )
    with tempfile.TemporaryDirectory(prefix="fapo-attr-") as tmp:
        ws = Path(tmp) / "workspace"
        ws.mkdir()
        (ws / "failures.json").write_text(json.dumps(req.failures, indent=2, default=str))
        ans = agent.attribute(req, ws)
        copy_transcripts(Path(tmp), transcripts)
    clusters = report.clusters
    if ans.clusters:
        clusters = [c for c in clusters if c.cause != "unexplained"] + list(ans.clusters)
        clusters.sort(key=lambda c: (-len(c.example_ids), -c.confidence))
    agent_part = AgentAttribution(
        clusters=list(ans.clusters), failure=ans.failure, invocations=list(ans.invocations)
    )
    return report.model_copy(update={"clusters": clusters, "agent": agent_part})

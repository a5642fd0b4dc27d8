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
from fapo.gold import gold_present, label_categories
from fapo.intervention_records import Kind
from fapo.records import AgentAttribution, Attribution, Example, Level
from fapo.tenant import Tenant

FAIL_BELOW = 0.999
#: Interventions: a ladder cluster is extrapolated from its probed sample when this share of the
#: sample agrees; otherwise up to MORE × the sample size of its members are probed.
AGREE = 0.8
MORE = 4

FIXES = {
    "output truncated": "raise the step's max_tokens (parameter) or ask for a shorter output",
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
    # The last two rungs guess the prompt level, so they name a step that has a prompt: when the
    # prediction is written by code (a computation, a post-processing node), the last step before
    # it that called a model. A prompt-level cluster on a model-free step is one no edit can
    # address (planted year-gap without checks.py: 17 of 32 failures were put on its code step).
    prompt_step = _last_model_step(steps, final_step)
    # The label fields the prediction is compared to: the state key holding it, and the output
    # key the final (or prompt) step declares, before any guess from the label's own shape.
    keys = [pred_key] + [
        out
        for out in (
            getattr(tenant.spec.steps.get(n), "output", None) for n in (final_step, prompt_step)
        )
        if out
    ]
    if gold_present(
        record.get("prediction"),
        example.label,
        list(dict.fromkeys(keys)),
        lambda path: label_categories(tenant, path),
    ):
        return Cause(prompt_step, "gold present but output badly formatted", "prompt", 0.85)
    return Cause(prompt_step, "unexplained", "prompt", 0.3)


def _last_model_step(steps: list[dict[str, Any]], final_step: str) -> str:
    """`final_step` if it called a model, else the last step recorded before it that did
    (`final_step` itself when none did)."""
    names = [str(s["step"]) for s in steps]
    end = len(names) - 1 - names[::-1].index(final_step) if final_step in names else len(names) - 1
    for s in reversed(steps[: end + 1]):
        if s.get("calls"):
            return str(s["step"])
    return final_step


def _fix_for(cause: str) -> str:
    for prefix, fix in FIXES.items():
        if cause.startswith(prefix) or prefix in cause:
            return fix
    return f"make step pass: {cause}"


def _sample(ids: list[str], k: int) -> list[str]:
    """Up to k ids spread evenly over the sorted list (deterministic, so resume probes the same)."""
    ids = sorted(ids)
    if len(ids) <= k:
        return ids
    return sorted(
        {ids[round(i * (len(ids) - 1) / (k - 1))] for i in range(k)} if k > 1 else {ids[0]}
    )


def _is_infrastructure(rec: dict[str, Any]) -> bool:
    """A model call that failed for infrastructure reasons (auth, rate limit, 5xx, connection):
    the provider's problem, never a cluster for the agent. A refusal, a content filter or an
    empty answer is the model's answer to this prompt: the chain's business, so it is clustered."""
    from fapo.llm import INFRASTRUCTURE

    infra = {k.value for k in INFRASTRUCTURE}
    calls = [c for s in rec.get("steps", []) for c in s.get("calls") or [] if c.get("error")]
    # A failed call without a kind (records written before calls carried one) counts as
    # infrastructure: only a recorded answer-kind (refusal, filter, empty) is the chain's.
    return any((c.get("error_kind") or next(iter(infra))) in infra for c in calls)


def _llm_steps(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Steps that called a model -> the highest temperature they sampled at (None: the
    provider's default, which samples)."""
    out: dict[str, float | None] = {}
    for r in records:
        for s in r.get("steps", []):
            for c in s.get("calls") or []:
                t = (c.get("settings") or {}).get("temperature")
                prev = out.get(s["step"], 0.0)
                out[s["step"]] = None if t is None or prev is None else max(prev, float(t))
    return out


def _evidence(verdicts: list[Any]) -> list[str]:
    """Per intervention, how many of these sampled failures it repaired."""

    n = len(verdicts)
    tally: dict[tuple[str, str, str], list[int]] = {}
    draws: dict[str, int] = {}
    for v in verdicts:
        for t in v.trials:
            key = (t.kind.value, t.step if t.kind != Kind.PARAMETER else "", t.detail)
            if t.kind == Kind.RESAMPLE:
                key = (t.kind.value, t.step, "")
                draws[t.step] = t.tries
            tally.setdefault(key, [0, 0])
            tally[key][0] += t.repaired
            tally[key][1] += 1
    lines, quiet = [], 0
    for (kind, step, detail), (won, tried) in sorted(tally.items(), key=lambda kv: -kv[1][0]):
        if kind == Kind.ORACLE.value:
            lines.append(f"oracle at {step} repaired {won}/{tried} sampled failures")
        elif kind == Kind.RESAMPLE.value:
            lines.append(
                f"resampling {step} repaired {won}/{tried} "
                f"(at least half of {draws.get(step, 1)} draws each)"
            )
        elif kind == Kind.REFERENCE.value:
            lines.append(f"the reference model at {step} repaired {won}/{tried}")
        elif won:
            lines.append(f"parameter {detail} repaired {won}/{tried}")
        else:
            quiet += 1
    if quiet:
        lines.append(f"{quiet} other parameter move(s) repaired none of {n}")
    return lines


def _intervention_cause(v: Any, ladder: tuple[str, str, str]) -> tuple[str, str, str]:
    """(step, cause, level) for a repaired example; keeps the ladder's words when they agree."""

    l_step, l_cause, l_level = ladder
    step, level = v.step, v.level
    if v.kind in (Kind.ORACLE, Kind.REFERENCE) and step == l_step and l_level != "parameter":
        # Checks know the task: at the step the oracle confirmed, their level stands (a
        # parameter level the parameter moves did not confirm does not).
        level = l_level
    if (step, level) == (l_step, l_level) and l_cause != "unexplained":
        return step, l_cause, level
    if v.kind == Kind.PARAMETER:
        name = v.detail.split("=", 1)[0]
        return (
            step,
            f"limited by parameter {name}: moving it ({v.detail}) repaired the failure",
            level,
        )
    if v.kind == Kind.RESAMPLE:
        return (
            step,
            "noise: the step's output varies between draws and a fresh draw repaired the "
            "failure; no declared parameter removes it, so vote or retry",
            level,
        )
    source = "the reference model's output" if v.kind == Kind.REFERENCE else "its correct output"
    return step, f"{step} is where it goes wrong: {source} repaired the final answer", level


def attribute(
    tenant: Tenant,
    results: Path,
    split: str = "train",
    *,
    interventions: Any | None = None,
) -> dict[str, Any]:
    """Cluster the failures recorded in `results` (a train results.jsonl of the incumbent).

    The ladder gives every failure a first (step, cause, level). With an `InterventionRunner`
    (fapo.interventions) a bounded sample of each ladder cluster is re-run with interventions;
    the earliest step an intervention repairs, and the level of that intervention, replace the
    ladder's guess for the sampled members and, by majority, for the rest of that cluster.
    Failures whose model calls errored are infrastructure: counted, never clustered."""
    examples = {ex.id: ex for ex in tenant.examples(split)}
    ladder: dict[str, tuple[str, str, str]] = {}
    conf: dict[str, float] = {}
    records: dict[str, dict[str, Any]] = {}
    infrastructure: list[str] = []
    n = failures = 0
    seen: set[str] = set()
    for rec in iter_results(results):
        if rec["id"] in seen:  # repeats: attribute the first repeat of each example
            continue
        seen.add(rec["id"])
        n += 1
        if rec["score"] >= FAIL_BELOW:
            continue
        if (rec.get("error") or {}).get("infrastructure"):  # provider down: not the chain's fault
            continue
        failures += 1
        if _is_infrastructure(rec):
            infrastructure.append(rec["id"])
            continue
        c = classify(tenant, rec, examples[rec["id"]])
        ladder[rec["id"]] = (c.step, c.cause, c.level)
        conf[rec["id"]] = c.confidence
        records[rec["id"]] = rec
    assigned: dict[str, tuple[str, str, str]] = dict(ladder)
    source = dict.fromkeys(ladder, "ladder")
    evidence_of: dict[tuple[str, str, str], list[Any]] = {}  # final key -> verdicts behind it
    params_of: dict[tuple[str, str, str], set[str]] = {}
    verdicts: dict[str, Any] = {}
    spend: dict[str, Any] | None = None
    if interventions is not None and ladder:
        by_cluster: dict[tuple[str, str, str], list[str]] = {}
        for i, key in ladder.items():
            by_cluster.setdefault(key, []).append(i)
        k = interventions.sample
        llm_steps = _llm_steps(list(records.values()))
        probe = sorted({i for ids in by_cluster.values() for i in _sample(ids, k)})
        verdicts = interventions.probe_many([examples[i] for i in probe], llm_steps)

        def outcomes(key: tuple[str, str, str], ids: list[str]) -> dict[Any, list[Any]]:
            out: dict[Any, list[Any]] = {}
            for i in ids:
                if i in verdicts:
                    v = verdicts[i]
                    out.setdefault(_intervention_cause(v, key) if v.step else None, []).append(v)
            return out

        # A ladder cluster whose probed members disagree (e.g. "unexplained", which mixes causes)
        # cannot be extrapolated from its sample: probe up to MORE times as many of its members.
        # So is one where a probe found a cause the majority's "nothing repaired" would hide: the
        # rest keep the ladder's guess, and the minority's cause goes unseen in them (kb-match
        # without checks.py: 1 of 8 probes found a sampling query step, 6 more had it unprobed).
        more: list[str] = []
        for key, ids in by_cluster.items():
            got = outcomes(key, ids)
            n_probed = sum(len(v) for v in got.values())
            hidden = None in got and len(got) > 1
            if n_probed and (max(len(v) for v in got.values()) < AGREE * n_probed or hidden):
                more += [i for i in _sample(ids, MORE * k) if i not in verdicts]
        if more:
            verdicts.update(
                interventions.probe_many([examples[i] for i in sorted(more)], llm_steps)
            )
        spend = interventions.spend()
        for key, ids in by_cluster.items():
            outcome = outcomes(key, ids)
            sampled = [v for vs in outcome.values() for v in vs]
            for v in sampled:
                if v.step:
                    final = _intervention_cause(v, key)
                    assigned[v.example_id], source[v.example_id] = final, "intervention"
                    conf[v.example_id] = 0.95
            if not sampled:
                continue
            best = max(outcome, key=lambda o: (len(outcome[o]), o is not None))
            share = len(outcome[best]) / len(sampled)
            for i in ids:
                if i not in verdicts and best is not None:
                    assigned[i], source[i] = best, "intervention"
                    conf[i] = round(0.95 * share, 3)
            for o, vs in outcome.items():
                if o is not None:
                    evidence_of.setdefault(o, []).extend(vs)
                    params_of.setdefault(o, set()).update(
                        v.detail.split("=", 1)[0]
                        for v in vs
                        if v.kind and v.kind.value == "parameter"
                    )
            if best is None:
                evidence_of.setdefault(key, []).extend(sampled)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for i, key in assigned.items():
        groups.setdefault(key, []).append(i)
    clusters = []
    for (step, cause, level), members in groups.items():
        srcs = {source[i] for i in members}
        clusters.append(
            Cluster(
                step=step,
                cause=cause,
                level=level,
                confidence=round(sum(conf[i] for i in members) / len(members), 3),
                example_ids=sorted(members),
                suggested_fix=_fix_for(cause),
                source="intervention" if "intervention" in srcs else "ladder",
                evidence=_evidence(evidence_of.get((step, cause, level), [])),
                parameters=sorted(params_of.get((step, cause, level), set())),
            )
        )
    clusters.sort(key=lambda c: (-len(c.example_ids), -c.confidence, c.step))
    out: dict[str, Any] = {
        "split": split,
        "examples": n,
        "failures": failures,
        "infrastructure": sorted(infrastructure),
        "clusters": [c.model_dump() for c in clusters],
    }
    if spend is not None:
        out["interventions"] = {
            **spend,
            "probed": len(verdicts),
            "verdicts": {
                i: {"step": v.step, "level": v.level, "kind": v.kind.value if v.kind else None}
                for i, v in sorted(verdicts.items())
            },
        }
    return out


def traces_for(
    results: Path, ids: Sequence[str], limit: int = 5, max_chars: int = 1500
) -> list[dict[str, Any]]:
    """Compact train traces for a brief: steps with their updates and model outputs, label, score."""
    from fapo.tracing import call_output  # a call's output may be stored in its step's update

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
                                "output": str(call_output(s, c))[:max_chars],
                                "finish_reason": c.get("finish_reason"),
                                "temperature": (c.get("settings") or {}).get("temperature"),
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


def ladder(
    tenant: Tenant, results: Path, split: str = "train", *, interventions: Any | None = None
) -> Attribution:
    """The ladder's clusters, tested by interventions when a runner is given, as a typed record."""
    return Attribution.model_validate(
        attribute(tenant, results, split, interventions=interventions)
    )


def with_agent(
    report: Attribution,
    agent: Agent,
    *,
    tenant: str,
    steps: Sequence[str],
    levels: Sequence[Level],
    results: Path,
    transcripts: Path,
    scratch: Path | None = None,
) -> Attribution:
    """The agent half: ask `agent` to cluster the failures the ladder left unexplained.

    Its clusters replace the unexplained ones (largest first); its transcripts are copied to
    `transcripts`. Returns `report` unchanged when nothing is unexplained. The workspace is
    created in `scratch` (the run's, `fapo.rundir.scratch`; default: TMP)."""
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
    with tempfile.TemporaryDirectory(prefix="fapo-attr-", dir=scratch) as tmp:
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

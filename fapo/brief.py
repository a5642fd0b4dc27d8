"""The proposer's brief: what it is told at a level, from train evidence only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fapo.agents.base import Brief, PromptInfo
from fapo.agents.prompts import LEVEL_DEFINITIONS, SYNTHETIC_RULE, TECHNIQUES
from fapo.attribute import iter_results, traces_for
from fapo.catalogue import Outline, prompt_steps
from fapo.context import placeholders
from fapo.history import plateau
from fapo.joint import joint_pairs, read_records
from fapo.param_effects import sampling_keys
from fapo.records import Cluster, Level
from fapo.tenant import Tenant
from fapo.workspace import allowed_files

RULES = [
    "Change only the files listed above; everything else is read-only and checked by hash.",
    "One proposal = one scoped change. Do not touch the scorer, checks, data or tenant.yaml.",
    "Never copy validation or test text into a file; you only see train evidence.",
    "Keep every {placeholder} a prompt already uses; the chain supplies exactly those.",
    "Parameters must stay inside their declared bounds.",
]


@dataclass(frozen=True)
class Incumbent:
    """What a proposal builds on: the incumbent variant, its id, scores and train results."""

    id: str
    tenant: Tenant
    scores: dict[str, float]  # aggregate train/val means, the only val figure an agent sees
    train_results: Path


def build_brief(
    inc: Incumbent,
    level: Level,
    cluster: Cluster | None,
    history: Sequence[dict[str, Any]],
    *,
    outline: Outline | None = None,
) -> Brief:
    """Everything the proposer is told, from train evidence only: per level what its change
    needs (steps; parameter bounds and current values; prompts with their variables and the
    steps that use them), earlier attempts, techniques and a plateau warning."""
    spec = inc.tenant.spec
    prompts: list[PromptInfo] = []
    if outline is not None and level in ("prompt", "structure", "code"):
        used = prompt_steps(inc.tenant.prompts, _records(inc.train_results))
        blamed = cluster.step if cluster else None
        for name, text in inc.tenant.prompts.items():
            variables = outline.prompts.get(name) or sorted(placeholders(text))
            steps = used.get(name, [])
            prompts.append(
                PromptInfo(
                    file=f"prompts/{name}.md",
                    variables=list(variables),
                    steps=steps,
                    implicated=blamed in steps,
                )
            )
        prompts.sort(key=lambda p: not p.implicated)
    parameter = level == "parameter"
    return Brief(
        tenant=spec.name,
        level=level,
        objective=(
            f"Raise the mean score of the pipeline (scorer: {spec.scorer}) "
            f"by fixing the failure cluster below with one {level}-level change. "
            f"At this level: {LEVEL_DEFINITIONS[level]}."
        ),
        scores=dict(inc.scores),
        cluster=cluster,
        traces=traces_for(inc.train_results, cluster.example_ids) if cluster else [],
        allowed_files=allowed_files(inc.tenant, level),
        param_bounds={k: v.model_dump() for k, v in spec.params.items()} if parameter else {},
        param_values=dict(inc.tenant.params) if parameter else {},
        # key -> prompts of the step it feeds: what a joint change may pair (fapo/joint.py)
        joint=joint_pairs(inc.tenant, read_records(inc.train_results)) if parameter else {},
        # keys measured to act as a sampling temperature (the built-in agent's thrift)
        sampling=sorted(sampling_keys(inc.tenant)) if parameter else [],
        history=list(history),
        rules=[*RULES, SYNTHETIC_RULE],
        steps=list(outline.steps) if outline else [],
        prompts=prompts,
        context_files=_context_files(inc.tenant, level, cluster),
        techniques=list(TECHNIQUES),
        plateau=plateau(history, level),
        structure=inc.tenant.files.get("structure.yaml", "transforms: []\n")
        if level in ("structure", "code")
        else None,
    )


def _records(path: Path) -> list[dict[str, Any]]:
    return list(iter_results(path)) if path.is_file() else []


def _context_files(tenant: Tenant, level: Level, cluster: Cluster | None) -> dict[str, str]:
    """What the workspace's context/ holds for this level (the brief lists it)."""
    out: dict[str, str] = {}
    if cluster:
        out["traces.json"] = "train traces of the cluster: each step's output, label, score"
    if level in ("structure", "code"):
        out["transforms.md"] = "the transform catalogue: every kind, its fields, an example"
        out["chain.md"] = "the chain's steps, edges and prompts with their variables"
        out["functions.md"] = "functions the chain registered, usable by transforms"
    out["scorer.py"] = "how outputs are scored (read-only)"
    if tenant.spec.checks:
        out["checks.py"] = "the tenant's step checks (read-only)"
    return out

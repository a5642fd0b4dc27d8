"""Joint candidates: a parameter-level change that carries one prompt change of the same step.

Two defects of one step can repair only together (policy-qa: the evidence prompt loses a second
sentence, and the evidence step's `max_tokens` cuts it off once the prompt asks for it): a
candidate that changes one of them gains nothing, so neither is ever accepted. A **joint**
candidate is a parameter-level candidate (it counts as the higher of its two levels, so the loop
proposes it only once the prompt level is behind it) that changes exactly one `params.yaml` key
and exactly one existing prompt file, where both belong to the same step:

- the key *feeds* step S: building the chain with the key moved within its bounds changes a
  setting other than the temperature (noise is repaired by lowering it alone) of a chat model
  whose recorded calls (the parent's train records) are S's calls and no other step's;
- the prompt is *rendered* by S: its longest literal stretch is in S's recorded calls and in no
  call of a step the key does not feed (`fapo.catalogue.prompt_steps`).

Anything else is refused (fail-closed): a parent that runs candidate chain code (it is built
only in the sandboxed worker, so nothing here builds it), no records, a key that feeds no model call (a retrieval
depth), two keys, two prompts, a new prompt, a prompt of another step. `joint_pairs` is what the
brief offers; `joint_problem` is review's check of one candidate, on the same binding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fapo.candidate import is_candidate_code
from fapo.catalogue import prompt_steps
from fapo.param_effects import SAMPLING, model_settings, probe_values
from fapo.tenant import Tenant

#: Result records read for the binding: settings and prompts are the same for every example of
#: a step (they come from build(ctx)), so a few records show every step that ran.
RECORDS = 20
#: Where a prompt change may accompany a key: the level a joint candidate counts as.
JOINT_LEVEL = "parameter"


def read_records(path: Path | None, limit: int = RECORDS) -> list[dict[str, Any]]:
    """The first `limit` result records of a results.jsonl (none when there is no file)."""
    if path is None or not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
            if len(out) >= limit:
                break
    return out


def _matches(built: Mapping[str, Any], recorded: Mapping[str, Any]) -> bool:
    keys = [k for k in built if k != "role"]
    return bool(keys) and all(recorded.get(k) == built[k] for k in keys)


def key_steps(
    tenant: Tenant, name: str, records: Iterable[dict[str, Any]], values: Iterable[Any] = ()
) -> set[str]:
    """Steps whose model calls the key feeds (empty when none can be shown: fail-closed)."""
    if name not in tenant.spec.params:
        return set()
    base = model_settings(tenant, tenant.params)
    if base is None:
        return set()
    changed: list[dict[str, Any]] = []
    for value in [*values, *probe_values(tenant, name)]:
        moved = model_settings(tenant, {**tenant.params, name: value})
        if moved is None or len(moved) != len(base):
            return set()  # the key changes what the chain builds: not a setting of one step
        changed += [
            b
            for b, m in zip(base, moved, strict=True)
            if {k for k in {*b, *m} if b.get(k) != m.get(k)} - SAMPLING and b not in changed
        ]
    if not changed:
        return set()
    steps: set[str] = set()
    for rec in records:
        for s in rec.get("steps", []):
            for call in s.get("calls", []):
                if any(_matches(b, call.get("settings") or {}) for b in changed):
                    steps.add(s["step"])
    return steps


def joint_pairs(tenant: Tenant, records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{params.yaml key: prompt files of the same step}, for every key that feeds exactly one
    step whose calls render a prompt; keys without such a prompt are left out."""
    used = prompt_steps(tenant.prompts, records, limit=len(records))
    out: dict[str, list[str]] = {}
    for name in tenant.spec.params:
        steps = key_steps(tenant, name, records)
        if len(steps) != 1:
            continue
        files = [f"prompts/{p}.md" for p, at in sorted(used.items()) if at and set(at) <= steps]
        if files:
            out[name] = files
    return out


def changed_keys(old: str | None, new: str | None) -> list[str] | None:
    """Keys whose value differs between two params.yaml texts (None: not a mapping)."""
    try:
        a = yaml.safe_load(old or "") or {}
        b = yaml.safe_load(new or "") or {}
    except yaml.YAMLError:
        return None
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    return sorted(k for k in {*a, *b} if a.get(k) != b.get(k))


def joint_problem(
    parent: Tenant, changes: Mapping[str, str | None], records: list[dict[str, Any]]
) -> str | None:
    """Why `changes` is not one valid joint candidate of `parent` (None: it is). Called for a
    parameter-level candidate that changes any file besides params.yaml."""
    prompts = sorted(r for r in changes if r != "params.yaml")
    rule = "a parameter-level candidate may change one prompt only with one params.yaml key of the same step"  # fmt: skip
    if "params.yaml" not in changes:
        return f"{', '.join(prompts)} changed without params.yaml; {rule}"
    if len(prompts) != 1 or not prompts[0].startswith("prompts/"):
        return f"{len(prompts)} files besides params.yaml ({', '.join(prompts)}); {rule}"
    rel = prompts[0]
    if changes[rel] is None or rel not in parent.files:
        return f"{rel} is new or deleted; {rule} (an existing prompt, edited)"
    keys = changed_keys(parent.files.get("params.yaml"), changes["params.yaml"])
    if keys is None or len(keys) != 1:
        return f"params.yaml changes {len(keys or [])} keys ({', '.join(keys or [])}); {rule}"
    if is_candidate_code(parent):
        return f"the parent runs candidate chain code, never built outside the sandbox; {rule}"
    if not records:
        return f"no train records of the parent to bind {keys[0]} and {rel} to a step; {rule}"
    new_value = (yaml.safe_load(changes["params.yaml"] or "") or {}).get(keys[0])
    steps = key_steps(parent, keys[0], records, [new_value])
    if len(steps) != 1:
        what = "no model call" if not steps else f"{len(steps)} steps ({', '.join(sorted(steps))})"
        return f"params.yaml key {keys[0]} feeds {what}; {rule}"
    name = rel[len("prompts/") : -len(".md")]
    at = prompt_steps(parent.prompts, records, limit=len(records)).get(name) or []
    if not at or not set(at) <= steps:
        where = ", ".join(at) or "no recorded step"
        return f"{rel} is rendered by {where}, {keys[0]} feeds {next(iter(steps))}; {rule}"
    return None

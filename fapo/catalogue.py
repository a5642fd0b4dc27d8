"""What an agent may write in `structure.yaml`, generated from fapo/transforms.py so it cannot drift.

Each transform kind's fields (type, default, bounds) come from its pydantic model; its example
from the `transforms:` block of transforms.py's module docstring, validated against the model
(an example that stopped validating fails `tests/test_agents_cli.py`); where it attaches from
its `after` / `node` field. Also: the chain's steps, edges and declared prompts, read by
building the chain without a model.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from fapo import transforms
from fapo.tenant import Tenant

#: How each attachment field places a transform in the graph.
_ATTACH = {
    "after": "inserts a new step right after the step named in `after` (that step's outgoing "
    "edges now leave from the new step)",
    "node": "wraps the existing step named in `node` (the step keeps its name and edges)",
}


def transform_models() -> list[type[BaseModel]]:
    """The transform classes of the `Transform` union, in declaration order."""
    union = typing.get_args(transforms.Transform)[0]
    return list(typing.get_args(union))


def _kind(model: type[BaseModel]) -> str:
    return typing.get_args(model.model_fields["kind"].annotation)[0]


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(info: Any) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{sign} {getattr(meta, attr)}")
        if getattr(meta, "min_length", None):
            parts.append(f"at least {meta.min_length} item(s)")
    return ", ".join(parts)


def docstring_examples() -> dict[str, dict[str, Any]]:
    """{kind: example} from the YAML block in transforms.py's module docstring, each validated
    against its model (ValueError when one no longer validates)."""
    doc = transforms.__doc__ or ""
    block = doc[doc.index("transforms:") : doc.index("\n\n", doc.index("transforms:"))]
    data = yaml.safe_load(block)
    parsed = transforms.Structure.model_validate(data)  # raises when an example drifted
    return {t.kind: t.model_dump() for t in parsed.transforms}


def _example(model: type[BaseModel], examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The docstring's example, else one built from the fields (placeholders for names)."""
    kind = _kind(model)
    if kind in examples:
        return examples[kind]
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name == "kind":
            out[name] = kind
        elif not info.is_required():
            continue
        elif typing.get_origin(info.annotation) is list:
            out[name] = [f"<{name}>"]
        else:
            out[name] = f"<{name}>"
    return out


def transform_catalogue(functions: typing.Iterable[str] = ()) -> str:
    """Markdown: every transform kind with its fields, where it attaches and an example;
    the functions transforms may name (built-in and the tenant's registered `functions`)."""
    examples = docstring_examples()
    lines = [
        "# structure.yaml: the transform catalogue",
        "",
        "`structure.yaml` holds one key, `transforms:`, a list applied in order to the chain's",
        "graph by the engine. Each entry is one of the kinds below; unknown keys are errors.",
        "A prompt a transform names (e.g. `query_prompt: hop`) is `prompts/hop.md`, which you",
        "create; it may use only the placeholders listed in the transform's `inputs`.",
        "",
    ]
    for model in transform_models():
        kind = _kind(model)
        attach = next((_ATTACH[f] for f in ("after", "node") if f in model.model_fields), "")
        lines += [f"## `{kind}`", "", f"Attaches: {attach}." if attach else "", ""]
        lines += ["| field | type | required | default / bounds |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            req = "yes" if info.is_required() else "no"
            default = "" if info.is_required() else json.dumps(info.default)
            extra = "; ".join(x for x in (default, _bounds(info)) if x)
            lines.append(f"| `{name}` | {_type_name(info.annotation)} | {req} | {extra} |")
        example = yaml.safe_dump(
            {"transforms": [_example(model, examples)]}, sort_keys=False, default_flow_style=None
        )
        lines += ["", "Example:", "", "```yaml", example.rstrip(), "```", ""]
    builtin = sorted(transforms.BUILTIN_FUNCTIONS)
    lines += [
        "## Functions a transform may name (`function`, `validator`, `search`)",
        "",
        f"- built in: {', '.join(f'`{n}`' for n in builtin)}",
        f"- registered by this chain: {', '.join(f'`{n}`' for n in sorted(functions)) or 'none'}",
        "",
        "A search function returns a list of items to add under `key`; a validator returns",
        "true when the step's output is acceptable; a postprocess function returns the new value.",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Outline:
    """The chain as built without a model: steps, edges, prompts and their variables."""

    steps: list[str]
    edges: list[tuple[str, str]]
    prompts: dict[str, list[str]]  # prompt name -> variables the chain supplies
    functions: list[str]


def chain_outline(tenant: Tenant) -> Outline:
    """Build the tenant's chain with a model factory that never calls a model."""
    from fapo.validate import null_factory

    graph, ctx = tenant.build(null_factory(dict(tenant.spec.models)))
    return Outline(
        steps=list(graph.nodes),
        edges=sorted((str(a), str(b)) for a, b in graph.edges),
        prompts={k: list(v) for k, v in ctx.declared.items()},
        functions=sorted(ctx.functions),
    )


def outline_markdown(outline: Outline) -> str:
    lines = ["# The chain's steps, in graph order", ""]
    lines += [f"- `{s}`" for s in outline.steps]
    lines += ["", "Edges:", ""] + [f"- `{a}` → `{b}`" for a, b in outline.edges]
    lines += ["", "Prompts and the variables the chain supplies to each:", ""]
    lines += [f"- `prompts/{p}.md`: {', '.join(v) or '(none)'}" for p, v in outline.prompts.items()]
    return "\n".join(lines) + "\n"


def _literal_marker(template: str) -> str:
    """The longest literal stretch of a prompt template (between placeholders), trimmed to 60
    characters: what every rendering of the template contains."""
    import string

    try:
        chunks = [lit for lit, *_ in string.Formatter().parse(template)]
    except ValueError:
        chunks = [template]
    best = max((c.strip() for c in chunks), key=len, default="")
    return best[:60]


def prompt_steps(
    prompts: dict[str, str], records: typing.Iterable[dict[str, Any]], limit: int = 20
) -> dict[str, list[str]]:
    """{prompt name: steps whose model calls rendered it}, from up to `limit` result records
    (train traces): a call renders a prompt when its messages hold the template's longest
    literal stretch (so it works for any tenant, without running the chain)."""
    markers = {n: m for n, t in prompts.items() if len(m := _literal_marker(t)) >= 12}
    used: dict[str, list[str]] = {n: [] for n in prompts}
    for i, rec in enumerate(records):
        if i >= limit:
            break
        for step in rec.get("steps", []):
            text = "\n".join(
                str(m.get("content") if isinstance(m, dict) else m)
                for c in step.get("calls", [])
                for m in c.get("messages") or []
            )
            for name, marker in markers.items():
                if step["step"] not in used[name] and marker in text:
                    used[name].append(step["step"])
    return used

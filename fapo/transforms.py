"""The vetted library of structural transforms, applied to the tenant's StateGraph from
`structure.yaml`. The agent edits that file; the engine does the graph surgery, so a structural
change is declarative, reviewable and cannot smuggle arbitrary code into the pipeline.

    transforms:
      - {kind: postprocess, after: answer, key: answer, function: normalize}
      - {kind: majority_vote, node: answer, key: answer, samples: 3}
      - {kind: validate_retry, node: answer, key: answer, validator: is_valid, max_attempts: 3}
      - {kind: retrieval_hop, after: retrieve, query_prompt: hop_query,
         inputs: [question, passages], search: search, key: passages}

Functions are the tenant's own (`ctx.register(name, fn)` in chain.py) or built-ins below.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fapo.errors import FapoError, validation_problem
from fapo.runtime import SAMPLE


class _T(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PostProcess(_T):
    kind: Literal["postprocess"]
    after: str
    key: str
    function: str


class MajorityVote(_T):
    kind: Literal["majority_vote"]
    node: str
    key: str
    samples: int = Field(3, ge=2, le=15)


class ValidateRetry(_T):
    kind: Literal["validate_retry"]
    node: str
    key: str
    validator: str
    max_attempts: int = Field(3, ge=2, le=10)


class RetrievalHop(_T):
    kind: Literal["retrieval_hop"]
    after: str
    query_prompt: str
    inputs: list[str] = Field(min_length=1)
    search: str
    key: str
    max_tokens: int = Field(64, ge=1, le=4096)


Transform = Annotated[
    PostProcess | MajorityVote | ValidateRetry | RetrievalHop, Field(discriminator="kind")
]


class Structure(_T):
    transforms: list[Transform] = Field(default_factory=list)


def _strip(value: Any, state: dict) -> Any:
    return value.strip() if isinstance(value, str) else value


def _first_line(value: Any, state: dict) -> Any:
    return (
        value.strip().splitlines()[0].strip() if isinstance(value, str) and value.strip() else value
    )


#: Deterministic functions every tenant can reference without registering them.
BUILTIN_FUNCTIONS: dict[str, Callable[..., Any]] = {"strip": _strip, "first_line": _first_line}


def parse_structure(data: Any, path: Path) -> Structure:
    try:
        return Structure.model_validate(data or {})
    except ValidationError as exc:
        _, key, msg = validation_problem(exc)
        raise FapoError(
            f"{path}: key '{key}': {msg}; see docs/loop.md for the transform library"
        ) from None


def _as_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return str(value)


def _vote_key(value: Any) -> str:
    return " ".join(str(value).lower().split())


def decided(votes: list[str], samples: int) -> bool:
    """Can the samples not yet drawn change the vote's winner? Only when the leader is ahead of
    every other answer (and of any new one) by more than the draws left: then the full vote
    returns the same sample, so the rest are not paid for (news-section's vote at a classifier
    flipping one draw in five: 7 calls an example before)."""
    if not votes:
        return False
    ranked = Counter(votes).most_common(2)
    lead = ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0)
    return lead > samples - len(votes)


def _rewire_after(graph: Any, node: str, new: str) -> None:
    """Insert `new` right after `node`: node's outgoing edges and branches now leave from `new`."""
    outgoing = [(a, b) for (a, b) in graph.edges if a == node]
    for a, b in outgoing:
        graph.edges.discard((a, b))
        graph.edges.add((new, b))
    if node in graph.branches:
        graph.branches[new] = graph.branches.pop(node)
    graph.waiting_edges = {
        (tuple(new if s == node else s for s in starts), end) for starts, end in graph.waiting_edges
    }
    graph.edges.add((node, new))


def _fresh(graph: Any, base: str) -> str:
    name, i = base, 2
    while name in graph.nodes:
        name, i = f"{base}_{i}", i + 1
    return name


def apply_structure(graph: Any, ctx: Any, data: Any, path: Path) -> Any:
    """Apply every transform of structure.yaml to `graph` (in place) and return it."""
    from langchain_core.runnables import RunnableLambda

    structure = parse_structure(data, path)
    functions = {**BUILTIN_FUNCTIONS, **ctx.functions}

    def fn(name: str, i: int) -> Callable[..., Any]:
        if name not in functions:
            raise FapoError(
                f"{path}: transforms[{i}] names function '{name}' which is neither "
                f"built in nor registered (available: {', '.join(sorted(functions))})"
            )
        return functions[name]

    def node_of(name: str, i: int) -> None:
        if name not in graph.nodes:
            raise FapoError(
                f"{path}: transforms[{i}] names step '{name}' which the graph lacks "
                f"(steps: {', '.join(graph.nodes)})"
            )

    for i, t in enumerate(structure.transforms):
        if isinstance(t, PostProcess):
            node_of(t.after, i)
            f = fn(t.function, i)

            def post(state: dict, _f=f, _k=t.key) -> dict:
                return {_k: _f(state.get(_k), state)}

            name = _fresh(graph, f"post_{t.after}")
            graph.add_node(name, post)
            _rewire_after(graph, t.after, name)
        elif isinstance(t, RetrievalHop):
            node_of(t.after, i)
            search = fn(t.search, i)
            tpl = ctx.prompt(t.query_prompt, *t.inputs)
            llm = ctx.llm(temperature=0.0, max_tokens=t.max_tokens)

            async def hop(state: dict, _tpl=tpl, _llm=llm, _s=search, _t=t) -> dict:
                msg = await _llm.ainvoke(
                    _tpl.render(**{k: _as_text(state.get(k, "")) for k in _t.inputs})
                )
                query = str(msg.content).strip()
                have = list(state.get(_t.key) or [])
                new = [x for x in _s(query, state) if x not in have]
                return {_t.key: have + new}

            name = _fresh(graph, f"hop_{t.after}")
            graph.add_node(name, hop)
            _rewire_after(graph, t.after, name)
        else:
            node_of(t.node, i)
            spec = graph.nodes[t.node]
            orig = spec.runnable
            if isinstance(t, MajorityVote):

                async def voted(state: dict, config: Any, _o=orig, _t=t) -> dict:
                    updates: list[Any] = []
                    votes: list[str] = []
                    for s in range(_t.samples):
                        token = SAMPLE.set(s)
                        try:
                            updates.append(await _o.ainvoke(state, config))
                        finally:
                            SAMPLE.reset(token)
                        votes.append(_vote_key((updates[-1] or {}).get(_t.key)))
                        if decided(votes, _t.samples):
                            break
                    best = Counter(votes).most_common(1)[0][0]
                    return updates[votes.index(best)]  # the first sample with the most votes

                wrapped = voted
            else:
                validator = fn(t.validator, i)

                async def retried(state: dict, config: Any, _o=orig, _t=t, _v=validator) -> dict:
                    update: dict = {}
                    for attempt in range(_t.max_attempts):
                        token = SAMPLE.set(attempt)
                        try:
                            update = await _o.ainvoke(state, config)
                        finally:
                            SAMPLE.reset(token)
                        if _v((update or {}).get(_t.key), {**state, **(update or {})}):
                            break
                    return update

                wrapped = retried
            graph.nodes[t.node] = dataclasses.replace(spec, runnable=RunnableLambda(wrapped))
    return graph

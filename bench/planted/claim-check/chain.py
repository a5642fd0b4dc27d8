"""claim-check: claim -> BM25 retrieval (top k) -> evidence sentences (task model) -> verdict.

Each node writes a named state key (`passages`, `evidence`, `verdict`).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "were",
        "with",
    ]
)


class State(TypedDict, total=False):
    claim: str
    passages: list[str]  # "[id] text"
    evidence: list[str]  # "[id] sentence"
    verdict: str


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words without stopwords (same for corpus and query)."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/passages.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(p["text"]) for p in corpus])
    k = int(ctx.params["k"])
    evidence_tpl = ctx.prompt("evidence", "passages", "claim")
    verify_tpl = ctx.prompt("verify", "evidence", "claim")
    evidence_llm = ctx.llm(temperature=ctx.params["evidence_temperature"], max_tokens=256)
    verify_llm = ctx.llm(temperature=0.0, max_tokens=64)

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k passages for `query`, formatted "[id] text"; ties go to corpus order."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(corpus)), key=lambda i: (-scores[i], i))
        return [f"[{corpus[i]['id']}] {corpus[i]['text']}" for i in order[:k]]

    ctx.register("search", search)

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": search(state["claim"])}

    async def evidence(state: State) -> dict[str, Any]:
        prompt = evidence_tpl.render(
            passages="\n".join(state.get("passages", [])), claim=state["claim"]
        )
        text = _text(await evidence_llm.ainvoke(prompt))
        return {"evidence": [ln.strip() for ln in text.splitlines() if ln.strip()]}

    async def verify(state: State) -> dict[str, Any]:
        prompt = verify_tpl.render(
            evidence="\n".join(state.get("evidence", [])), claim=state["claim"]
        )
        return {"verdict": _text(await verify_llm.ainvoke(prompt))}

    graph = StateGraph(State)
    for name, fn in (("retrieve", retrieve), ("evidence", evidence), ("verify", verify)):
        graph.add_node(name, fn)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "evidence")
    graph.add_edge("evidence", "verify")
    graph.add_edge("verify", END)
    return graph

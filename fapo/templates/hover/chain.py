"""HoVer: query -> retrieve -> hop -> retrieve_2 -> hop_2 -> retrieve_3 -> verify.

Three BM25 hops (rank-bm25) over `corpus/passages.jsonl`, each adding up to `k` new documents,
then a verdict. The prediction `outcome` carries the retrieved titles (what the score measures)
and the verdict.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi


class State(TypedDict, total=False):
    claim: str
    query: str
    hop_query: str
    hop_query_2: str
    passages: list[str]
    verdict: str
    outcome: dict


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def titles(passages: list[str]) -> list[str]:
    return [p[1 : p.index("]")] for p in passages if p.startswith("[") and "]" in p]


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/passages.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(d["title"] + " " + d["text"]) for d in docs])
    k = int(ctx.params["k"])
    query_tpl = ctx.prompt("query", "claim")
    hop_tpl = ctx.prompt("hop", "claim", "passages")
    verify_tpl = ctx.prompt("verify", "claim", "passages")
    llm = ctx.llm(temperature=ctx.params["temperature"])

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k `[title] text` passages for `query` (ties: corpus order)."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))[:k]
        return [f"[{docs[i]['title']}] {docs[i]['text']}" for i in order]

    ctx.register("search", search)

    def add(state: State, query_key: str) -> dict[str, Any]:
        have = list(state.get("passages", []))
        new = [p for p in search(state.get(query_key) or state["claim"]) if p not in have]
        return {"passages": have + new}

    async def query(state: State) -> dict[str, Any]:
        return {"query": _text(await llm.ainvoke(query_tpl.render(claim=state["claim"])))}

    def hop_node(key: str):
        async def hop(state: State) -> dict[str, Any]:
            listing = "\n".join(state.get("passages", []))
            reply = await llm.ainvoke(hop_tpl.render(claim=state["claim"], passages=listing))
            return {key: _text(reply)}

        return hop

    async def verify(state: State) -> dict[str, Any]:
        listing = "\n".join(state.get("passages", []))
        said = _text(await llm.ainvoke(verify_tpl.render(claim=state["claim"], passages=listing)))
        verdict = "NOT_SUPPORTED" if re.search(r"not", said, re.IGNORECASE) else "SUPPORTED"
        return {
            "verdict": said,
            "outcome": {"titles": titles(state.get("passages", [])), "verdict": verdict},
        }

    graph = StateGraph(State)
    graph.add_node("query", query)
    graph.add_node("retrieve", lambda s: add(s, "query"))
    graph.add_node("hop", hop_node("hop_query"))
    graph.add_node("retrieve_2", lambda s: add(s, "hop_query"))
    graph.add_node("hop_2", hop_node("hop_query_2"))
    graph.add_node("retrieve_3", lambda s: add(s, "hop_query_2"))
    graph.add_node("verify", verify)
    order = ["query", "retrieve", "hop", "retrieve_2", "hop_2", "retrieve_3", "verify"]
    graph.add_edge(START, order[0])
    for a, b in zip(order, order[1:], strict=False):
        graph.add_edge(a, b)
    graph.add_edge(order[-1], END)
    return graph

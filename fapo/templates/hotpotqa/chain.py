"""HotpotQA: query -> retrieve -> hop -> retrieve_hop -> answer (the multi-hop program's shape).

Retrieval is BM25 (rank-bm25) over `corpus/passages.jsonl` (`{"title", "text"}`, written by
`fapo init --template hotpotqa --data …`). Each hop's passages are `[title] text` lines, so
attribution and checks can tell which supporting document a hop missed.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi


class State(TypedDict, total=False):
    question: str
    query: str
    passages: list[str]
    hop_query: str
    hop_passages: list[str]
    answer: str


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/passages.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(d["title"] + " " + d["text"]) for d in docs])
    k = int(ctx.params["k"])
    query_tpl = ctx.prompt("query", "question")
    hop_tpl = ctx.prompt("hop", "question", "passages")
    answer_tpl = ctx.prompt("answer", "question", "passages")
    llm = ctx.llm(temperature=ctx.params["temperature"])
    answer_llm = ctx.llm(temperature=ctx.params["temperature"], max_tokens=ctx.params["max_tokens"])

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k `[title] text` passages for `query` (ties: corpus order)."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))[:k]
        return [f"[{docs[i]['title']}] {docs[i]['text']}" for i in order]

    ctx.register("search", search)

    async def query(state: State) -> dict[str, Any]:
        return {"query": _text(await llm.ainvoke(query_tpl.render(question=state["question"])))}

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": search(state.get("query") or state["question"])}

    async def hop(state: State) -> dict[str, Any]:
        listing = "\n".join(state.get("passages", []))
        reply = await llm.ainvoke(hop_tpl.render(question=state["question"], passages=listing))
        return {"hop_query": _text(reply)}

    def retrieve_hop(state: State) -> dict[str, Any]:
        found = search(state.get("hop_query") or state["question"])
        return {"hop_passages": [p for p in found if p not in state.get("passages", [])]}

    async def answer(state: State) -> dict[str, Any]:
        listing = "\n".join(state.get("passages", []) + state.get("hop_passages", []))
        reply = await answer_llm.ainvoke(
            answer_tpl.render(question=state["question"], passages=listing)
        )
        return {"answer": _text(reply)}

    graph = StateGraph(State)
    for name, fn in (
        ("query", query),
        ("retrieve", retrieve),
        ("hop", hop),
        ("retrieve_hop", retrieve_hop),
        ("answer", answer),
    ):
        graph.add_node(name, fn)
    graph.add_edge(START, "query")
    graph.add_edge("query", "retrieve")
    graph.add_edge("retrieve", "hop")
    graph.add_edge("hop", "retrieve_hop")
    graph.add_edge("retrieve_hop", "answer")
    graph.add_edge("answer", END)
    return graph

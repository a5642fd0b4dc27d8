"""fact-lookup: question -> search query (task model) -> BM25 over the registry -> answer (task model).

Each node writes a named state key (`query`, `passages`, `answer`).
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
    answer: str


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words (the registry search keeps every word)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/registry.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(p["text"]) for p in corpus])
    k = int(ctx.params["k"])
    rewrite_tpl = ctx.prompt("rewrite", "question")
    answer_tpl = ctx.prompt("answer", "passages", "question")
    # Query rewriting samples at temperature 1.0 ("more varied queries"); not a declared parameter.
    rewriter = ctx.llm(temperature=1.0, max_tokens=48)
    answerer = ctx.llm(temperature=0.0, max_tokens=int(ctx.params["answer_max_tokens"]))

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k registry entries for `query`, formatted "[id] text"; ties go to registry order."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(corpus)), key=lambda i: (-scores[i], i))
        return [f"[{corpus[i]['id']}] {corpus[i]['text']}" for i in order[:k]]

    ctx.register("search", search)

    async def rewrite(state: State) -> dict[str, Any]:
        return {
            "query": _text(await rewriter.ainvoke(rewrite_tpl.render(question=state["question"])))
        }

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": search(state.get("query") or state["question"])}

    async def answer(state: State) -> dict[str, Any]:
        prompt = answer_tpl.render(
            passages="\n".join(state.get("passages", [])), question=state["question"]
        )
        return {"answer": _text(await answerer.ainvoke(prompt))}

    graph = StateGraph(State)
    for name, fn in (("rewrite", rewrite), ("retrieve", retrieve), ("answer", answer)):
        graph.add_node(name, fn)
    graph.add_edge(START, "rewrite")
    graph.add_edge("rewrite", "retrieve")
    graph.add_edge("retrieve", "answer")
    graph.add_edge("answer", END)
    return graph

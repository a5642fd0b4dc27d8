"""demo-qa: question -> BM25 retrieval (top k passages) -> answer (task model).

Each node writes a named state key (`passages`, `answer`) so attribution can tell a retrieval
miss from an answer error. `search` is registered for the structural `retrieval_hop` transform,
which the baseline does not use (see README.md and fixes/structure.yaml).
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
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "with",
    ]
)


class State(TypedDict, total=False):
    question: str
    passages: list[str]  # "[p012] text", one passage per item
    answer: str


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words without stopwords (same for corpus and query)."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/passages.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(p["text"]) for p in corpus])
    k = int(ctx.params["k"])
    answer_tpl = ctx.prompt("answer", "question", "passages")
    llm = ctx.llm(temperature=ctx.params["temperature"], max_tokens=ctx.params["max_tokens"])

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k passages for `query`, formatted "[id] text"; ties go to corpus order."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(corpus)), key=lambda i: (-scores[i], i))
        return [f"[{corpus[i]['id']}] {corpus[i]['text']}" for i in order[:k]]

    ctx.register("search", search)

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": search(state["question"])}

    async def answer(state: State) -> dict[str, Any]:
        prompt = answer_tpl.render(
            question=state["question"], passages="\n".join(state.get("passages", []))
        )
        reply = await llm.ainvoke(prompt)
        content = reply.content if isinstance(reply.content, str) else str(reply.content)
        return {"answer": content.strip()}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("answer", answer)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "answer")
    graph.add_edge("answer", END)
    return graph

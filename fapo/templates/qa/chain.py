"""Question -> retrieve (word overlap over corpus/passages.jsonl) -> answer (task model).

build(ctx) returns an uncompiled LangGraph StateGraph; each node is a step fapo records. Nodes
write named state keys (`passages`, `answer`) so attribution can tell a retrieval miss from an
answering error. Replace the retriever with your own (BM25, a vector store, ...) as you like.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

STOPWORDS = frozenset(
    {"a", "an", "and", "as", "at", "by", "did", "do", "for", "from", "in", "is", "of", "on"}
    | {"the", "to", "was", "what", "where", "which", "who"}
)


class State(TypedDict, total=False):
    question: str
    passages: list[str]  # "[p012] text", one passage per item
    answer: str


def words(text: str) -> set[str]:
    """Lower-case words without stopwords, with a crude plural/past-tense stem."""
    out = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        if w not in STOPWORDS:
            out.add(re.sub(r"(ed|s)$", "", w) if len(w) > 4 else w)
    return out


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/passages.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = [json.loads(line) for line in lines if line.strip()]
    index = [words(p["text"]) for p in corpus]
    k = int(ctx.params["k"])
    answer_prompt = ctx.prompt("answer", "question", "passages")
    llm = ctx.llm(temperature=ctx.params["temperature"], max_tokens=ctx.params["max_tokens"])

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k passages by shared words with `query`; ties go to corpus order."""
        q = words(query)
        order = sorted(range(len(corpus)), key=lambda i: (-len(q & index[i]), i))
        return [f"[{corpus[i]['id']}] {corpus[i]['text']}" for i in order[:k]]

    ctx.register("search", search)  # structural transforms may reuse it (e.g. a second hop)

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": search(state["question"])}

    async def answer(state: State) -> dict[str, Any]:
        prompt = answer_prompt.render(
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

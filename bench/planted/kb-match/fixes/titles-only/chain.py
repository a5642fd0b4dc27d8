"""kb-match: fault report -> search query (task model) -> BM25 top k articles -> match (task model).

Each node writes a named state key (`query`, `articles`, `article`).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi


class State(TypedDict, total=False):
    report: str
    query: str
    articles: list[str]  # article ids, best first
    article: str


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/articles.jsonl").read_text(encoding="utf-8").splitlines()
    kb = [json.loads(line) for line in lines if line.strip()]
    by_id = {a["id"]: a for a in kb}
    bm25 = BM25Okapi([tokenize(f"{a['title']} {a['body']}") for a in kb])
    k = int(ctx.params["k"])
    condense_tpl = ctx.prompt("condense", "report")
    match_tpl = ctx.prompt("match", "report", "articles")
    condenser = ctx.llm(temperature=ctx.params["condense_temperature"], max_tokens=48)
    matcher = ctx.llm(temperature=0.0, max_tokens=32)

    def search(query: str, state: Any = None) -> list[str]:
        """Ids of the top-k articles for `query`; ties go to knowledge-base order."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(kb)), key=lambda i: (-scores[i], i))
        return [kb[i]["id"] for i in order[:k]]

    ctx.register("search", search)

    async def condense(state: State) -> dict[str, Any]:
        return {
            "query": _text(await condenser.ainvoke(condense_tpl.render(report=state["report"])))
        }

    def retrieve(state: State) -> dict[str, Any]:
        return {"articles": search(state.get("query") or state["report"])}

    async def match(state: State) -> dict[str, Any]:
        options = "\n".join(
            f"- {i}: {by_id[i]['title']}. {by_id[i]['body']}"
            for i in sorted(state.get("articles", []))
        )
        reply = _text(
            await matcher.ainvoke(match_tpl.render(report=state["report"], articles=options))
        )
        found = re.search(r"KB-\d+", reply)
        return {"article": found.group(0) if found else reply}

    graph = StateGraph(State)
    for name, fn in (("condense", condense), ("retrieve", retrieve), ("match", match)):
        graph.add_node(name, fn)
    graph.add_edge(START, "condense")
    graph.add_edge("condense", "retrieve")
    graph.add_edge("retrieve", "match")
    graph.add_edge("match", END)
    return graph

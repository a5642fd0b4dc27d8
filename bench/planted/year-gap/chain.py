"""year-gap: two names -> BM25 lookup (code) -> both founding years in parallel (task model) -> gap.

`lookup` keeps, of each name's top-k BM25 passages, those that name the organisation. The graph
fans out after `lookup` (`year_first` and `year_second` run in the same superstep) and
fans in at `gap`, which computes the difference in code. Each year step keeps the model's reply
(`first_reply`, `second_reply`) and the year parsed from it (`first_year`, `second_year`).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi


class State(TypedDict, total=False):
    first: str
    second: str
    first_passages: list[str]
    second_passages: list[str]
    first_reply: str
    second_reply: str
    first_year: int | None
    second_year: int | None
    gap: str


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def parse_year(reply: str) -> int | None:
    """The last four-digit year in a reply (a reply states its year last: "... founded in 1820")."""
    years = re.findall(r"\b(1\d{3})\b", reply)
    return int(years[-1]) if years else None


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/archive.jsonl").read_text(encoding="utf-8").splitlines()
    corpus = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(p["text"]) for p in corpus])
    k = int(ctx.params["k"])
    first_tpl = ctx.prompt("year_first", "passages", "name")
    second_tpl = ctx.prompt("year_second", "passages", "name")
    first_reader = ctx.llm(temperature=ctx.params["first_temperature"], max_tokens=48)
    # The second reader samples at temperature 1.0 (copied from a "varied readings" trial).
    second_reader = ctx.llm(temperature=1.0, max_tokens=48)

    def search(query: str, state: Any = None) -> list[str]:
        """Top-k archive passages for `query`, formatted "[id] text"; ties go to archive order."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(corpus)), key=lambda i: (-scores[i], i))
        return [f"[{corpus[i]['id']}] {corpus[i]['text']}" for i in order[:k]]

    ctx.register("search", search)

    def lookup(state: State) -> dict[str, Any]:
        """Each name's top-k passages that name the organisation (a shared word is not enough)."""
        return {
            key: [p for p in search(state[name]) if state[name] in p]
            for key, name in (("first_passages", "first"), ("second_passages", "second"))
        }

    async def year_first(state: State) -> dict[str, Any]:
        prompt = first_tpl.render(
            passages="\n".join(state.get("first_passages", [])), name=state["first"]
        )
        reply = _text(await first_reader.ainvoke(prompt))
        return {"first_reply": reply, "first_year": parse_year(reply)}

    async def year_second(state: State) -> dict[str, Any]:
        prompt = second_tpl.render(
            passages="\n".join(state.get("second_passages", [])), name=state["second"]
        )
        reply = _text(await second_reader.ainvoke(prompt))
        return {"second_reply": reply, "second_year": parse_year(reply)}

    def gap(state: State) -> dict[str, Any]:
        a, b = state.get("first_year"), state.get("second_year")
        return {"gap": str(abs(b - a)) if a is not None and b is not None else "unknown"}

    graph = StateGraph(State)
    for name, fn in (
        ("lookup", lookup),
        ("year_first", year_first),
        ("year_second", year_second),
        ("gap", gap),
    ):
        graph.add_node(name, fn)
    graph.add_edge(START, "lookup")
    graph.add_edge("lookup", "year_first")
    graph.add_edge("lookup", "year_second")
    graph.add_edge(["year_first", "year_second"], "gap")
    graph.add_edge("gap", END)
    return graph

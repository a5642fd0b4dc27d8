"""local-tickets: ticket -> BM25 retrieval of k labelled tickets -> route (task model).

Sized for SmolLM2-135M served by llama.cpp (`local:smollm2`): one short call per example.
`team_named` is registered for the structural `postprocess` transform (not used by the baseline).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi

TEAMS = ("billing", "shipping", "account", "technical")


class State(TypedDict, total=False):
    ticket: str
    examples: list[str]  # "Ticket: … / Team: …", one labelled ticket per item
    team: str


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def team_named(value: Any, state: Any = None) -> Any:
    """The first team name the reply mentions (the reply unchanged when it names none)."""
    text = str(value or "").lower()
    found = [(text.find(t), t) for t in TEAMS if t in text]
    return min(found)[1] if found else value


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/labelled.jsonl").read_text(encoding="utf-8").splitlines()
    pool = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(p["text"]) for p in pool])
    k = int(ctx.params["k"])
    route_tpl = ctx.prompt("route", "ticket", "examples")
    llm = ctx.llm(temperature=0.0, max_tokens=int(ctx.params["max_tokens"]))
    ctx.register("team_named", team_named)

    def retrieve(state: State) -> dict[str, Any]:
        scores = bm25.get_scores(tokenize(state["ticket"]))
        order = sorted(range(len(pool)), key=lambda i: (-scores[i], i))[:k]
        return {"examples": [f"Ticket: {pool[i]['text']}\nTeam: {pool[i]['team']}" for i in order]}

    async def route(state: State) -> dict[str, Any]:
        prompt = route_tpl.render(
            ticket=state["ticket"], examples="\n\n".join(state.get("examples", []))
        )
        reply = await llm.ainvoke(prompt)
        content = reply.content if isinstance(reply.content, str) else str(reply.content)
        return {"team": content.strip()}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("route", route)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "route")
    graph.add_edge("route", END)
    return graph

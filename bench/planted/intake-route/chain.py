"""intake-route: message -> clip -> triage (task model) -> question branch or fault branch.

A conditional edge after `triage` runs either `lookup` (BM25 over the FAQ, code) -> `answer`
(task model), or `part` (task model: which part of the device is faulty). Both branches write
`outcome`; only one of them runs for a message. A triage reply that is not a known route goes
to the question branch (the chain never raises on a model's wording).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from rank_bm25 import BM25Okapi

ROUTES = {
    "question": "asks which desk or office handles a warranty, a repair or a return",
    "fault": "reports that something is broken, damaged or not working",
}
PARTS = {
    "hinge": "lid hinge squeaks or sticks",
    "battery": "battery drains or swells",
    "screen": "screen cracks or flickers",
    "fan": "fan rattles or whines",
    "port": "charging port wobbles or sparks",
}


class State(TypedDict, total=False):
    message: str
    text: str
    route: str
    entries: list[str]
    outcome: str


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def _options(items: dict[str, str]) -> str:
    return "\n".join(f"- {name}: {desc}" for name, desc in items.items())


def build(ctx: Any) -> StateGraph:
    lines = ctx.resource("corpus/faq.jsonl").read_text(encoding="utf-8").splitlines()
    faq = [json.loads(line) for line in lines if line.strip()]
    bm25 = BM25Okapi([tokenize(e["text"]) for e in faq])
    max_chars = int(ctx.params["max_chars"])
    triage_tpl = ctx.prompt("triage", "text", "routes")
    answer_tpl = ctx.prompt("answer", "entries", "text")
    part_tpl = ctx.prompt("part", "text", "parts")
    # Triage samples at temperature 1.0 (left from a "less rigid routing" trial).
    router = ctx.llm(temperature=1.0, max_tokens=16)
    answerer = ctx.llm(temperature=0.0, max_tokens=64)
    classifier = ctx.llm(temperature=0.0, max_tokens=16)

    def search(query: str, state: Any = None) -> list[str]:
        """Top-3 FAQ entries for `query`, formatted "[id] text"; ties go to FAQ order."""
        scores = bm25.get_scores(tokenize(query))
        order = sorted(range(len(faq)), key=lambda i: (-scores[i], i))
        return [f"[{faq[i]['id']}] {faq[i]['text']}" for i in order[:3]]

    ctx.register("search", search)

    def clip(state: State) -> dict[str, Any]:
        return {"text": state["message"][:max_chars]}

    async def triage(state: State) -> dict[str, Any]:
        prompt = triage_tpl.render(text=state["text"], routes=_options(ROUTES))
        return {"route": _text(await router.ainvoke(prompt))}

    def branch(state: State) -> str:
        return "part" if state.get("route", "").strip().lower() == "fault" else "lookup"

    def lookup(state: State) -> dict[str, Any]:
        return {"entries": search(state["text"])}

    async def answer(state: State) -> dict[str, Any]:
        prompt = answer_tpl.render(entries="\n".join(state.get("entries", [])), text=state["text"])
        return {"outcome": _text(await answerer.ainvoke(prompt))}

    async def part(state: State) -> dict[str, Any]:
        prompt = part_tpl.render(text=state["text"], parts=_options(PARTS))
        return {"outcome": _text(await classifier.ainvoke(prompt))}

    graph = StateGraph(State)
    for name, fn in (
        ("clip", clip),
        ("triage", triage),
        ("lookup", lookup),
        ("answer", answer),
        ("part", part),
    ):
        graph.add_node(name, fn)
    graph.add_edge(START, "clip")
    graph.add_edge("clip", "triage")
    graph.add_conditional_edges("triage", branch, ["lookup", "part"])
    graph.add_edge("lookup", "answer")
    graph.add_edge("answer", END)
    graph.add_edge("part", END)
    return graph

"""Ticket text -> classify (task model) -> label: a one-step pipeline.

build(ctx) returns an uncompiled LangGraph StateGraph; each node is a step fapo records. Add steps
(e.g. a rule-based pre-filter, or an extraction step before classifying) as more nodes.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    text: str
    label: str


def build(ctx: Any) -> StateGraph:
    prompt = ctx.prompt("classify", "text")
    llm = ctx.llm(temperature=ctx.params["temperature"], max_tokens=ctx.params["max_tokens"])

    async def classify(state: State) -> dict[str, Any]:
        reply = await llm.ainvoke(prompt.render(text=state["text"]))
        content = reply.content if isinstance(reply.content, str) else str(reply.content)
        return {"label": content.strip()}

    graph = StateGraph(State)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", END)
    return graph

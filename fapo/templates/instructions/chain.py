"""Topic + constraints -> write (task model) -> text: a one-step pipeline.

build(ctx) returns an uncompiled LangGraph StateGraph; each node is a step fapo records. The
constraints reach the prompt as a bullet list; the scorer checks them on the output.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    topic: str
    constraints: list[str]
    text: str


def build(ctx: Any) -> StateGraph:
    prompt = ctx.prompt("write", "topic", "constraints")
    llm = ctx.llm(temperature=ctx.params["temperature"], max_tokens=ctx.params["max_tokens"])

    async def write(state: State) -> dict[str, Any]:
        bullets = "\n".join(f"- {c}" for c in state.get("constraints", []))
        reply = await llm.ainvoke(prompt.render(topic=state["topic"], constraints=bullets))
        content = reply.content if isinstance(reply.content, str) else str(reply.content)
        return {"text": content.strip()}

    graph = StateGraph(State)
    graph.add_node("write", write)
    graph.add_edge(START, "write")
    graph.add_edge("write", END)
    return graph

"""IFBench: respond -> check -> revise, every step on the task model.

`respond` drafts an answer to the request (`draft`); `check` lists the instructions the draft does
not follow, or says OK (`critique`); `revise` rewrites the draft against that list (`response`).
When the critique is OK the draft is the answer and no call is made. The
chain sees only the prompt: instruction ids and their arguments are labels, for the scorer only.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

#: A critique that approves the draft: "OK", "OK.", "ok — nothing to fix".
APPROVES = re.compile(r"^\s*ok\b", re.IGNORECASE)


class State(TypedDict, total=False):
    prompt: str
    draft: str
    critique: str
    response: str


def _text(reply: Any) -> str:
    content = reply.content if isinstance(reply.content, str) else str(reply.content)
    return content.strip()


def build(ctx: Any) -> StateGraph:
    respond_tpl = ctx.prompt("respond", "prompt")
    check_tpl = ctx.prompt("check", "prompt", "response")
    revise_tpl = ctx.prompt("revise", "prompt", "response", "critique")
    temperature = ctx.params["temperature"]
    writer = ctx.llm(temperature=temperature, max_tokens=ctx.params["max_tokens"])
    checker = ctx.llm(temperature=temperature, max_tokens=ctx.params["check_max_tokens"])

    async def respond(state: State) -> dict[str, Any]:
        return {"draft": _text(await writer.ainvoke(respond_tpl.render(prompt=state["prompt"])))}

    async def check(state: State) -> dict[str, Any]:
        reply = await checker.ainvoke(
            check_tpl.render(prompt=state["prompt"], response=state["draft"])
        )
        return {"critique": _text(reply)}

    async def revise(state: State) -> dict[str, Any]:
        critique = state.get("critique", "")
        if APPROVES.match(critique):
            return {"response": state["draft"]}
        reply = await writer.ainvoke(
            revise_tpl.render(prompt=state["prompt"], response=state["draft"], critique=critique)
        )
        return {"response": _text(reply) or state["draft"]}

    graph = StateGraph(State)
    graph.add_node("respond", respond)
    graph.add_node("check", check)
    graph.add_node("revise", revise)
    graph.add_edge(START, "respond")
    graph.add_edge("respond", "check")
    graph.add_edge("check", "revise")
    graph.add_edge("revise", END)
    return graph

"""Papillon: redact (trusted) -> delegate (untrusted) -> respond (trusted).

Only `request` ever reaches the untrusted model (role `untrusted` in tenant.yaml); the final
response is written by the trusted task model from the user's query and the delegated answer.
The prediction `outcome` holds both the response (quality) and the request (leakage).
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    query: str
    request: str
    delegated: str
    response: str
    outcome: dict


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    redact_tpl = ctx.prompt("redact", "query")
    respond_tpl = ctx.prompt("respond", "query", "delegated")
    t, n = ctx.params["temperature"], ctx.params["max_tokens"]
    trusted = ctx.llm(temperature=t)
    writer = ctx.llm(temperature=t, max_tokens=n)
    untrusted = ctx.llm("untrusted", temperature=t, max_tokens=n)

    async def redact(state: State) -> dict[str, Any]:
        return {"request": _text(await trusted.ainvoke(redact_tpl.render(query=state["query"])))}

    async def delegate(state: State) -> dict[str, Any]:
        return {"delegated": _text(await untrusted.ainvoke(state.get("request") or ""))}

    async def respond(state: State) -> dict[str, Any]:
        reply = await writer.ainvoke(
            respond_tpl.render(query=state["query"], delegated=state.get("delegated", ""))
        )
        response = _text(reply)
        return {
            "response": response,
            "outcome": {"response": response, "request": state.get("request", "")},
        }

    graph = StateGraph(State)
    graph.add_node("redact", redact)
    graph.add_node("delegate", delegate)
    graph.add_node("respond", respond)
    graph.add_edge(START, "redact")
    graph.add_edge("redact", "delegate")
    graph.add_edge("delegate", "respond")
    graph.add_edge("respond", END)
    return graph

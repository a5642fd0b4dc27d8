"""ticket-routing: ticket -> clip -> department (task model) -> lookup -> issue type (task model).

The department's issue types come from catalog/departments.json; an unknown department falls back
to the first one (the chain never raises on a model's wording).
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    ticket: str
    text: str
    department: str
    issues: list[str]
    issue: str


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def _options(items: dict[str, str]) -> str:
    return "\n".join(f"- {name}: {desc}" for name, desc in items.items())


def build(ctx: Any) -> StateGraph:
    catalog = json.loads(ctx.resource("catalog/departments.json").read_text(encoding="utf-8"))
    max_chars = int(ctx.params["max_chars"])
    department_tpl = ctx.prompt("department", "text", "departments")
    issue_tpl = ctx.prompt("issue", "text", "issues")
    # The router samples at temperature 1.0 (kept from an old "diverse routing" experiment).
    router = ctx.llm(temperature=1.0, max_tokens=32)
    classifier = ctx.llm(temperature=0.0, max_tokens=64)

    def clip(state: State) -> dict[str, Any]:
        return {"text": state["ticket"][:max_chars]}

    async def department(state: State) -> dict[str, Any]:
        desc = {name: d["description"] for name, d in catalog.items()}
        prompt = department_tpl.render(text=state["text"], departments=_options(desc))
        return {"department": _text(await router.ainvoke(prompt))}

    def lookup(state: State) -> dict[str, Any]:
        dept = catalog.get(state.get("department", "").strip().lower()) or next(
            iter(catalog.values())
        )
        return {"issues": list(dept["issues"])}

    async def issue(state: State) -> dict[str, Any]:
        issues = {name: d["issues"][name] for d in catalog.values() for name in d["issues"]}
        options = {name: issues[name] for name in state.get("issues", [])}
        prompt = issue_tpl.render(text=state["text"], issues=_options(options))
        return {"issue": _text(await classifier.ainvoke(prompt))}

    graph = StateGraph(State)
    steps = (("clip", clip), ("department", department), ("lookup", lookup), ("issue", issue))
    for name, fn in steps:
        graph.add_node(name, fn)
    graph.add_edge(START, "clip")
    for (a, _), (b, _) in zip(steps, steps[1:], strict=False):
        graph.add_edge(a, b)
    graph.add_edge("issue", END)
    return graph

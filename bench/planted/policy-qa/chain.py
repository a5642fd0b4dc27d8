"""policy-qa: (question, handbook section) -> evidence sentences (task model) -> answer (task model).

The answer step sees only the evidence lines, so what the evidence step leaves out is lost.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    section: list[str]  # "[id] text"
    evidence: list[str]  # "[id] sentence"
    answer: str


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    evidence_tpl = ctx.prompt("evidence", "section", "question")
    answer_tpl = ctx.prompt("answer", "evidence", "question")
    selector = ctx.llm(temperature=0.0, max_tokens=int(ctx.params["evidence_max_tokens"]))
    answerer = ctx.llm(temperature=ctx.params["answer_temperature"], max_tokens=64)

    async def evidence(state: State) -> dict[str, Any]:
        prompt = evidence_tpl.render(
            section="\n".join(state["section"]), question=state["question"]
        )
        text = _text(await selector.ainvoke(prompt))
        return {"evidence": [ln.strip() for ln in text.splitlines() if ln.strip()]}

    async def answer(state: State) -> dict[str, Any]:
        prompt = answer_tpl.render(
            evidence="\n".join(state.get("evidence", [])), question=state["question"]
        )
        return {"answer": _text(await answerer.ainvoke(prompt))}

    graph = StateGraph(State)
    graph.add_node("evidence", evidence)
    graph.add_node("answer", answer)
    graph.add_edge(START, "evidence")
    graph.add_edge("evidence", "answer")
    graph.add_edge("answer", END)
    return graph

"""news-section: article -> extractive summary (task model) -> section label (task model).

The classifier sees only the summary, so what the summary drops is lost.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    article: str
    summary: str
    section: str


def _text(reply: Any) -> str:
    return (reply.content if isinstance(reply.content, str) else str(reply.content)).strip()


def build(ctx: Any) -> StateGraph:
    summarize_tpl = ctx.prompt("summarize", "sentences", "article")
    classify_tpl = ctx.prompt("classify", "summary")
    sentences = int(ctx.params["summary_sentences"])
    summarizer = ctx.llm(temperature=0.0, max_tokens=256)
    # The section classifier samples at temperature 1.0; it is not a declared parameter.
    classifier = ctx.llm(temperature=1.0, max_tokens=16)

    async def summarize(state: State) -> dict[str, Any]:
        prompt = summarize_tpl.render(sentences=sentences, article=state["article"])
        return {"summary": _text(await summarizer.ainvoke(prompt))}

    async def classify(state: State) -> dict[str, Any]:
        reply = await classifier.ainvoke(classify_tpl.render(summary=state.get("summary", "")))
        return {"section": _text(reply).lower()}

    graph = StateGraph(State)
    graph.add_node("summarize", summarize)
    graph.add_node("classify", classify)
    graph.add_edge(START, "summarize")
    graph.add_edge("summarize", "classify")
    graph.add_edge("classify", END)
    return graph

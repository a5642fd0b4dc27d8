"""A tenant no change can help (issue 17, P6): its failures are label noise.

Fictional people live in fictional cities; `retrieve` (code) looks up the person's facts, `answer`
(the simulated model, sim:default — not an LLM) names the city from them, and does so correctly
for every example. A seeded quarter of the labels name another city, so the model's right answer
scores 0 there and nothing in the chain (prompt, parameter or structure) can earn those points.
80 train, 40 val, 40 test rows. `python tests/nohelp_tenant.py DIR` writes it into DIR.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tenant_kit import EXACT_SCORER, invented, write_splits

NOISE = 0.25  # share of rows whose label names the wrong city
SPLITS = {"train": 80, "val": 40, "test": 40}

CHAIN = """
from __future__ import annotations

import json
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    person: str
    passages: list[str]
    answer: str


def build(ctx: Any) -> StateGraph:
    table = json.loads(ctx.resource("corpus/facts.json").read_text(encoding="utf-8"))
    tpl = ctx.prompt("answer", "question", "passages")
    llm = ctx.llm(temperature=float(ctx.params["temperature"]), max_tokens=int(ctx.params["max_tokens"]))
    k = int(ctx.params["k"])

    def search(query: str, state: Any = None) -> list[str]:
        words = set(str(query).lower().split())
        hits = [p for name, ps in table.items() if words & set(name.lower().split()) for p in ps]
        return hits[:k]

    ctx.register("search", search)

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": list(table.get(state["person"], []))[:k]}

    async def answer(state: State) -> dict[str, Any]:
        q = f"In which city does {state['person']} live?"
        reply = await llm.ainvoke(tpl.render(question=q, passages="\\n".join(state["passages"])))
        return {"answer": str(reply.content).strip()}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("answer", answer)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "answer")
    graph.add_edge("answer", END)
    return graph
"""


ANSWER = "Answer with only the answer.\n\nQuestion: {question}\n\n{passages}\n"

TENANT = """\
name: nohelp
description: Label noise only (issue 17, P6). Simulated model (sim:default), not an LLM.
models: {task: "sim:default"}
prediction: answer
scorer: scorer.py
scope: [prompt, parameter, structure]
params:
  k: {type: int, min: 1, max: 8, description: facts retrieved per person}
  temperature: {type: float, min: 0.0, max: 1.0, description: answer sampling temperature}
  max_tokens: {type: int, min: 16, max: 512, description: answer length limit}
acceptance: {min_improvement: 0.02, alpha: 0.05}
budget: {max_variants: 12}
target_score: 0.95
"""


def write(root: Path, seed: int = 1717) -> Path:
    """Write the tenant folder `root/nohelp`; returns it."""
    rng = random.Random(seed)
    t = root / "nohelp"
    for sub in ("prompts", "corpus", "data"):
        (t / sub).mkdir(parents=True, exist_ok=True)
    n = sum(SPLITS.values())
    people: list[str] = []
    while len(people) < n:
        p = f"{invented(rng, 2)} {invented(rng, 3)}"
        if p not in people:
            people.append(p)
    cities = sorted({invented(rng, 3) for _ in range(200)})
    facts, rows = {}, []
    for i, person in enumerate(people):
        city = rng.choice(cities)
        hobby = rng.choice(("chess", "rowing", "pottery", "birding"))
        facts[person] = [
            f"[f{i}] {person} lives in {city}.",
            f"[h{i}] {person} enjoys {hobby} on weekends.",
        ]
        label = rng.choice([c for c in cities if c != city]) if rng.random() < NOISE else city
        rows.append({"id": f"n{i:03d}", "inputs": {"person": person}, "label": label})
    (t / "corpus" / "facts.json").write_text(json.dumps(facts, indent=0), encoding="utf-8")
    write_splits(t, rows, SPLITS)
    (t / "chain.py").write_text(CHAIN, encoding="utf-8")
    (t / "scorer.py").write_text(EXACT_SCORER, encoding="utf-8")
    (t / "prompts" / "answer.md").write_text(ANSWER, encoding="utf-8")
    (t / "params.yaml").write_text("k: 2\ntemperature: 0.0\nmax_tokens: 64\n", encoding="utf-8")
    (t / "tenant.yaml").write_text(TENANT, encoding="utf-8")
    return t


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))

"""A linear chain whose two consecutive model steps both sample (tests/test_two_samplers.py).

Which river flows through the capital of the country a person was born in? `find` (the
simulated model, sim:default — not an LLM — at temperature 0) reads a short biography and names
the country; `facts` (code) looks up that country's facts; `capital` (model, samples at the
declared `a_temperature`) names the capital from "The capital city of C is X, near Y."; `river`
(model, samples at the declared `b_temperature`) names the river through that city from the
country's city facts ("X lies on the R river, near the Z hills.").

A flip of `capital` names Y instead of X; a flip of `river` names the hills instead of the river.
Whether a `capital` flip matters is planted per tenant:

- `harmless_a=True`: Y lies on the same river as X, so a flipped capital still leads `river` to
  the right answer — but it changes `river`'s prompt, so `river` draws afresh (its noise
  re-rolled by `capital`'s);
- `harmless_a=False`: Y lies on another river, so a flipped capital is a wrong final answer.

`python tests/two_samplers_tenant.py DIR` writes the default tenant into DIR/two-samplers.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tenant_kit import invented, write_splits

SPLITS = {"train": 40, "val": 8, "test": 8}

CHAIN = """
from __future__ import annotations

import json
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    person: str
    bio: str
    country: str
    capital_facts: list[str]
    city_facts: list[str]
    capital: str
    river: str


def build(ctx: Any) -> StateGraph:
    table = json.loads(ctx.resource("corpus/facts.json").read_text(encoding="utf-8"))
    tpl = {s: ctx.prompt(s, "question", "passages") for s in ("find", "capital", "river")}
    find_llm = ctx.llm(temperature=0.0, max_tokens=40)
    capital_llm = ctx.llm(temperature=float(ctx.params["a_temperature"]), max_tokens=40)
    river_llm = ctx.llm(temperature=float(ctx.params["b_temperature"]), max_tokens=40)

    async def ask(llm: Any, step: str, question: str, passages: list[str]) -> str:
        prompt = tpl[step].render(question=question, passages="\\n".join(passages))
        return str((await llm.ainvoke(prompt)).content).strip()

    async def find(state: State) -> dict[str, Any]:
        q = f"In which country was {state['person']} born?"
        return {"country": await ask(find_llm, "find", q, [state["bio"]])}

    def facts(state: State) -> dict[str, Any]:
        got = table.get(state.get("country", ""), {})
        return {"capital_facts": got.get("capital", []), "city_facts": got.get("cities", [])}

    async def capital(state: State) -> dict[str, Any]:
        q = f"What is the capital city of {state.get('country', '')}?"
        return {"capital": await ask(capital_llm, "capital", q, state.get("capital_facts", []))}

    async def river(state: State) -> dict[str, Any]:
        q = f"Which river flows through {state.get('capital', '')}?"
        return {"river": await ask(river_llm, "river", q, state.get("city_facts", []))}

    graph = StateGraph(State)
    for name, fn in (("find", find), ("facts", facts), ("capital", capital), ("river", river)):
        graph.add_node(name, fn)
    graph.add_edge(START, "find")
    graph.add_edge("find", "facts")
    graph.add_edge("facts", "capital")
    graph.add_edge("capital", "river")
    graph.add_edge("river", END)
    return graph
"""

PROMPT = "Answer with only the answer.\n\nQuestion: {question}\n\n{passages}\n"

CHECKS = """
from fapo import oracle


@oracle("find")
def right_country(example, state):
    return {"country": example.label["country"]}


@oracle("capital")
def right_capital(example, state):
    return {"capital": example.label["capital"]}


@oracle("river")
def right_river(example, state):
    return {"river": example.label["river"]}
"""

SCORER = """
def score(example, prediction):
    return float(str(prediction or "").strip() == example.label["river"])
"""

TENANT = """\
name: NAME
description: >-
  The river through the capital of a person's birth country: find the country (simulated model,
  sim:default, not an LLM) -> its facts (code) -> the capital (model, samples) -> the river
  (model, samples).
models: {task: "sim:default"}
prediction: river
scorer: scorer.py
checks: checks.py
scope: [prompt, parameter, structure]
params:
  a_temperature: {type: float, min: 0.0, max: 2.5, description: sampling temperature of capital}
  b_temperature: {type: float, min: 0.0, max: 2.5, description: sampling temperature of river}
acceptance: {min_improvement: 0.02, alpha: 0.05}
budget: {max_variants: 6}
target_score: 0.95
"""


def write(
    root: Path,
    name: str = "two-samplers",
    *,
    a_temperature: float = 1.0,
    b_temperature: float = 1.0,
    harmless_a: bool = False,
    seed: int = 2026,
) -> Path:
    """Write the tenant folder `root/name` with the given temperatures (params.yaml) and planted
    effect of a `capital` flip; returns it."""
    rng = random.Random(seed)
    t = root / name
    for sub in ("prompts", "corpus", "data"):
        (t / sub).mkdir(parents=True, exist_ok=True)
    used: set[str] = set()

    def fresh(parts: int) -> str:
        while True:
            word = invented(rng, parts)
            if word not in used:
                used.add(word)
                return word

    table: dict[str, dict[str, list[str]]] = {}
    rows = []
    for i in range(sum(SPLITS.values())):
        person = f"{fresh(2)} {fresh(3)}"
        country, capital, other = fresh(3), fresh(3), fresh(3)
        river, hills = fresh(3), fresh(3)
        other_river = river if harmless_a else fresh(3)
        tag = f"k{i:03d}"
        table[country] = {
            "capital": [f"[{tag}c] The capital city of {country} is {capital}, near {other}."],
            "cities": [
                f"[{tag}a] {capital} lies on the {river} river, near the {hills} hills.",
                f"[{tag}b] {other} lies on the {other_river} river, near the {fresh(3)} hills.",
            ],
        }
        rows.append(
            {
                "id": f"r{i:03d}",
                "inputs": {"person": person, "bio": f"[bio] {person} was born in {country}."},
                "label": {"country": country, "capital": capital, "river": river},
            }
        )
    (t / "corpus" / "facts.json").write_text(json.dumps(table, indent=0), encoding="utf-8")
    write_splits(t, rows, SPLITS)
    (t / "chain.py").write_text(CHAIN, encoding="utf-8")
    for step in ("find", "capital", "river"):
        (t / "prompts" / f"{step}.md").write_text(PROMPT, encoding="utf-8")
    (t / "checks.py").write_text(CHECKS, encoding="utf-8")
    (t / "scorer.py").write_text(SCORER, encoding="utf-8")
    (t / "params.yaml").write_text(
        f"a_temperature: {a_temperature}\nb_temperature: {b_temperature}\n", encoding="utf-8"
    )
    (t / "tenant.yaml").write_text(TENANT.replace("NAME", name, 1), encoding="utf-8")
    return t


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))

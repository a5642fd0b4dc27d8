"""A map-reduce tenant whose fan-out uses LangGraph's `Send` API (tests/test_send_fanout.py).

How many years separate the oldest and the newest of three fictional organisations? `split`
(code) fetches each organisation's archive cards; a conditional edge sends one `Send("read",
{name, cards})` per organisation, so `read` (the simulated model, sim:default — not an LLM) runs
once per organisation in one superstep with its own input; a reducer (`operator.add`) collects
`{name, year}` records in `years`; `span` (code) is the difference of the largest and smallest year.

Two planted defects, both in the map step `read`:

- prompt: the read prompt tells the model to think it through step by step. A card says the
  organisation was founded by a society, and another card says when that society first met; the
  question asks when the organisation was *first* founded, so a stepping reader follows the
  society to its own (earlier) year. Every question with a society-founded organisation fails,
  at every temperature. Fix: drop that sentence.
- noise: `read` samples at `read_temperature` = 0.6 (declared, 0..1); a flip names the founder
  instead of the year, the year is then missing and the span is "unknown". Fix: temperature 0.

`python tests/send_tenant.py DIR` writes it into DIR/send-span.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tenant_kit import invented, write_splits

SPLITS = {"train": 24, "val": 24, "test": 24}
ITEMS = 3  # organisations per question (Send instances of `read` per example)
SOCIETY = 0.35  # share of questions with one society-founded organisation

CHAIN = """
from __future__ import annotations

import json
import operator
import re
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send


class State(TypedDict, total=False):
    names: list[str]
    cards: dict[str, list[str]]
    years: Annotated[list[dict[str, Any]], operator.add]
    span: str
    note: str


class Item(TypedDict):
    name: str
    cards: list[str]


def parse_year(reply: str) -> int | None:
    # the reply must be the year alone: anything else is no year
    found = re.fullmatch(r"\\s*(1\\d{3})\\.?\\s*", reply)
    return int(found.group(1)) if found else None


def build(ctx: Any) -> StateGraph:
    archive = json.loads(ctx.resource("corpus/cards.json").read_text(encoding="utf-8"))
    tpl = ctx.prompt("read", "name", "cards")
    reader = ctx.llm(temperature=float(ctx.params["read_temperature"]), max_tokens=48)

    def split(state: State) -> dict[str, Any]:
        return {"cards": {n: list(archive.get(n, [])) for n in state["names"]}}

    def fan(state: State) -> list[Any]:
        sends = [Send("read", {"name": n, "cards": state["cards"][n]}) for n in state["names"]]
        return sends + __SIBLING_TARGET__

    async def read(item: Item) -> dict[str, Any]:
        reply = await reader.ainvoke(tpl.render(name=item["name"], cards="\\n".join(item["cards"])))
        text = str(reply.content).strip()
        return {"years": [{"name": item["name"], "year": parse_year(text)}]}

__SIBLING_NODE__
    def span(state: State) -> dict[str, Any]:
        got = {r["name"]: r["year"] for r in state.get("years", [])}
        years = [got.get(n) for n in state["names"]]
        if any(y is None for y in years):
            return {"span": "unknown"}
        return {"span": str(max(years) - min(years))}

    graph = StateGraph(State)
    graph.add_node("split", split)
    graph.add_node("read", read)
    graph.add_node("span", span)
    for name, fn in graph_nodes.items():
        graph.add_node(name, fn)
    graph.add_edge(START, "split")
    graph.add_conditional_edges("split", fan, ["read"__SIBLING_NAME__])
    graph.add_edge(["read", *graph_nodes] if graph_nodes else "read", "span")
    graph.add_edge("span", END)
    return graph
"""

READ = """Read the archive cards about the organisation.
Think it through step by step before you answer.
Answer with only the answer.

Question: In what year was the {name} first founded?

{cards}
"""

CHECKS = """
from fapo import oracle


@oracle("read")
def gold_years(example, state):
    # A Send step's oracle is the update of all its instances together: every name's record.
    years = example.label["years"]
    return {"years": [{"name": n, "year": years[n]} for n in state["names"]]}


@oracle("span")
def gold_span(example, state):
    return {"span": example.label["span"]}
"""

SCORER = """
def score(example, prediction):
    return float(str(prediction or "").strip() == example.label["span"])
"""

TENANT = """\
name: send-span
description: >-
  Years between the oldest and newest of three organisations: archive cards (code) -> one
  founding-year reader per organisation via LangGraph Send (simulated model, sim:default, not an
  LLM) -> the span (code).
models: {task: "sim:default"}
prediction: span
scorer: scorer.py
checks: checks.py
scope: [prompt, parameter, structure]
params:
  read_temperature: {type: float, min: 0.0, max: 1.0, description: sampling temperature of the reader}
acceptance: {min_improvement: 0.02, alpha: 0.05}
budget: {max_variants: 8}
target_score: 0.95
"""

#: The sibling variant: `note` (the simulated model at temperature 1.0, output unused by `span`)
#: runs in the same superstep as the `read` instances, and `span` waits for both (a join edge).
SIBLING = {
    "__SIBLING_TARGET__": '["note"]',
    "__SIBLING_NAME__": ', "note"',
    "__SIBLING_NODE__": """    noter = ctx.llm(temperature=1.0, max_tokens=16)
    note_tpl = ctx.prompt("note", "names")

    async def note(state: State) -> dict[str, Any]:
        reply = await noter.ainvoke(note_tpl.render(names=", ".join(state["names"])))
        return {"note": str(reply.content).strip()}

    graph_nodes = {"note": note}
""",
}
PLAIN = {
    "__SIBLING_TARGET__": "[]",
    "__SIBLING_NAME__": "",
    "__SIBLING_NODE__": "    graph_nodes: dict[str, Any] = {}\n",
}
NOTE = """Answer with only the answer.

Question: Which organisation is named first in the list?

[list] {names}
"""

KINDS = ("Guild", "League", "Lodge", "Union", "Circle", "Company")


def write(root: Path, seed: int = 4242, *, sibling: bool = False) -> Path:
    """Write the tenant folder `root/send-span` (`root/send-span-sib` with the `note` sibling);
    returns it."""
    rng = random.Random(seed)
    name = "send-span-sib" if sibling else "send-span"
    t = root / name
    for sub in ("prompts", "corpus", "data"):
        (t / sub).mkdir(parents=True, exist_ok=True)
    archive: dict[str, list[str]] = {}
    founded: dict[str, int] = {}

    def organisation(society: bool) -> str:
        while True:
            name = f"{invented(rng, 2)} {rng.choice(KINDS)}"
            if name not in archive:
                break
        year = rng.randrange(1800, 1900)
        tag = f"{name[:3].lower()}{len(archive)}"
        if society:
            founder = f"{invented(rng, 2)} Society"
            cards = [
                f"[{tag}a] The {name} was founded in {year} by the {founder}.",
                f"[{tag}b] The {founder} first met in {rng.randrange(1700, 1790)}.",
            ]
        else:
            founder = f"{invented(rng, 2)} {invented(rng, 1)}"
            cards = [
                f"[{tag}a] The {name} was founded in {year} by {founder}.",
                f"[{tag}b] {founder} was a weaver.",
            ]
        archive[name], founded[name] = cards, year
        return name

    rows = []
    for i in range(sum(SPLITS.values())):
        names = [organisation(False) for _ in range(ITEMS)]
        if rng.random() < SOCIETY:
            names[rng.randrange(ITEMS)] = organisation(True)
        years = {n: founded[n] for n in names}
        span = str(max(years.values()) - min(years.values()))
        rows.append(
            {"id": f"s{i:03d}", "inputs": {"names": names}, "label": {"span": span, "years": years}}
        )
    (t / "corpus" / "cards.json").write_text(json.dumps(archive, indent=0), encoding="utf-8")
    write_splits(t, rows, SPLITS)
    chain = CHAIN
    for mark, text in (SIBLING if sibling else PLAIN).items():
        chain = chain.replace(mark, text)
    (t / "chain.py").write_text(chain, encoding="utf-8")
    if sibling:
        (t / "prompts" / "note.md").write_text(NOTE, encoding="utf-8")
    (t / "checks.py").write_text(CHECKS, encoding="utf-8")
    (t / "scorer.py").write_text(SCORER, encoding="utf-8")
    (t / "prompts" / "read.md").write_text(READ, encoding="utf-8")
    (t / "params.yaml").write_text(
        "read_temperature: 0.6   # sampling temperature of the reader\n", encoding="utf-8"
    )
    (t / "tenant.yaml").write_text(TENANT.replace("send-span", name, 1), encoding="utf-8")
    return t


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))

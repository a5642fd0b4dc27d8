"""A tenant whose two defects repair only together (issue 12, joint candidates).

Fictional manuscripts were bound by fictional binderies, which sit in fictional towns whose names
have three words. `lookup` (code) fetches the manuscript's and its bindery's catalogue cards;
`answer` (the simulated model, sim:default — not an LLM) names the town. Two defects, both at the
answer step:

- prompt: the answer prompt does not ask to reason in steps, so the simulator stops at the
  bindery (the bridge) instead of following it to the town;
- parameter: `answer_max_tokens` = 2 cuts a three-word town to two words (finish reason length).

The prompt fix alone gets the town cut off; the longer limit alone still names the bindery: only
both in one candidate repair the town questions. A third of the questions ask for the bindery
(two words) and pass throughout. 48 train, 36 val, 36 test rows.
`python tests/joint_tenant.py DIR` writes it into DIR.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from tenant_kit import EXACT_SCORER, invented, write_splits

SPLITS = {"train": 48, "val": 36, "test": 36}
SINGLE_HOP = 1 / 3  # share of questions that ask for the bindery itself (they always pass)

CHAIN = """
from __future__ import annotations

import json
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    manuscript: str
    question: str
    cards: list[str]
    answer: str


def build(ctx: Any) -> StateGraph:
    cards = json.loads(ctx.resource("catalog/cards.json").read_text(encoding="utf-8"))
    tpl = ctx.prompt("answer", "question", "cards")
    llm = ctx.llm(temperature=0.0, max_tokens=int(ctx.params["answer_max_tokens"]))

    def lookup(state: State) -> dict[str, Any]:
        own = cards["manuscripts"][state["manuscript"]]
        bindery = own["bindery"]
        return {"cards": [own["card"], cards["binderies"][bindery]]}

    async def answer(state: State) -> dict[str, Any]:
        prompt = tpl.render(question=state["question"], cards="\\n".join(state["cards"]))
        reply = await llm.ainvoke(prompt)
        return {"answer": str(reply.content).strip()}

    graph = StateGraph(State)
    graph.add_node("lookup", lookup)
    graph.add_node("answer", answer)
    graph.add_edge(START, "lookup")
    graph.add_edge("lookup", "answer")
    graph.add_edge("answer", END)
    return graph
"""


ANSWER = """Answer the question from the catalogue cards. Answer with only the final answer, no explanation.

Cards:
{cards}

Question: {question}
"""

TENANT = """\
name: joint
description: >-
  Where was a manuscript bound? Catalogue cards (code) -> answer (simulated model, sim:default,
  not an LLM). Two defects at the answer step that repair only together.
models: {task: "sim:default"}
prediction: answer
scorer: scorer.py
scope: [prompt, parameter, structure]
params:
  answer_max_tokens: {type: int, min: 1, max: 64, description: output length limit of the answer step}
steps:
  answer: {output: answer, max_words: 4}
acceptance: {min_improvement: 0.02, alpha: 0.05}
budget: {max_variants: 12}
target_score: 0.95
"""

TOWN_HEADS = ("Port", "Fort", "Saint", "Glen", "Mount", "Lake")
TOWN_TAILS = ("Reach", "Crossing", "Landing", "Hollow", "Ferry", "Heights")


def write(root: Path, seed: int = 1213) -> Path:
    """Write the tenant folder `root/joint`; returns it."""
    rng = random.Random(seed)
    t = root / "joint"
    for sub in ("prompts", "catalog", "data"):
        (t / sub).mkdir(parents=True, exist_ok=True)
    binderies: dict[str, str] = {}
    towns: dict[str, str] = {}
    while len(binderies) < 24:
        bindery = f"{invented(rng, 3)} Bindery"
        town = f"{rng.choice(TOWN_HEADS)} {invented(rng, 2)} {rng.choice(TOWN_TAILS)}"
        if bindery not in binderies and town not in towns.values():
            towns[bindery] = town
            binderies[bindery] = (
                f"[b{len(binderies)}] The {bindery} is based in the town of {town}."
            )
    names = sorted(binderies)
    manuscripts: dict[str, dict[str, str]] = {}
    rows = []
    n = sum(SPLITS.values())
    while len(rows) < n:
        title = f"{invented(rng, 2)} {invented(rng, 2)} Codex"
        if title in manuscripts:
            continue
        bindery = rng.choice(names)
        card = f"[m{len(rows)}] The {title} was bound by the {bindery}."
        manuscripts[title] = {"bindery": bindery, "card": card}
        if rng.random() < SINGLE_HOP:
            question, label = f"Which bindery bound the {title}?", bindery
        else:
            question, label = (
                f"In which town is the bindery that bound the {title}?",
                towns[bindery],
            )
        rows.append(
            {
                "id": f"j{len(rows):03d}",
                "inputs": {"manuscript": title, "question": question},
                "label": label,
            }
        )
    (t / "catalog" / "cards.json").write_text(
        json.dumps({"manuscripts": manuscripts, "binderies": binderies}, indent=0),
        encoding="utf-8",
    )
    write_splits(t, rows, SPLITS)
    (t / "chain.py").write_text(CHAIN, encoding="utf-8")
    (t / "scorer.py").write_text(EXACT_SCORER, encoding="utf-8")
    (t / "prompts" / "answer.md").write_text(ANSWER, encoding="utf-8")
    (t / "params.yaml").write_text(
        "answer_max_tokens: 2   # output length limit of the answer step\n", encoding="utf-8"
    )
    (t / "tenant.yaml").write_text(TENANT, encoding="utf-8")
    return t


if __name__ == "__main__":
    print(write(Path(sys.argv[1])))

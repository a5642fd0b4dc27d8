"""Small tenants with one planted defect each, for the attribution/intervention tests.

Every tenant is a fictional lookup task answered by the simulated model (sim:default, not an LLM):
a person -> (extract) the country they were born in -> (lookup, code) that country's facts ->
(answer) the country's capital. Defects:

- `upstream`: extract's prompt does not ask for only the answer, so its verbose output breaks the
  lookup; the failure shows at `answer` (the ladder blames `answer`), the cause is extract's prompt.
- `noise`: answer samples at temperature 1.0 (hard-coded, or a declared parameter) and the facts
  name a second city, so some draws pick the wrong one.
- `depth`: lookup returns the top `k` facts in file order and the capital sits below decoy facts.
"""

from __future__ import annotations

import json
from pathlib import Path

PEOPLE = [
    ("Alma Ruske", "Veloria", "Dunmar", "Orsk"),
    ("Bram Tiller", "Kestavia", "Lunhold", "Pemberly"),
    ("Cora Vance", "Ostrana", "Miravel", "Quell"),
    ("Dario Felk", "Brenmoor", "Tasgard", "Ulvik"),
    ("Edda Morrow", "Calveth", "Rinsey", "Holt"),
    ("Fenn Arlo", "Drusia", "Pellmore", "Gant"),
    ("Greta Sable", "Esmarch", "Wolden", "Ferro"),
    ("Hugo Brandt", "Falcria", "Oxley", "Brill"),
    ("Ines Corra", "Galdor", "Saltmere", "Vinn"),
    ("Jonas Pike", "Hestria", "Corvale", "Dunn"),
    ("Kira Moss", "Ilvania", "Bexmoor", "Tarn"),
    ("Lars Evra", "Jorvia", "Quillan", "Marsh"),
    ("Mina Stroud", "Kaltor", "Ferrin", "Lusk"),
    ("Nils Hart", "Lormund", "Gravesend", "Pike"),
    ("Olga Venn", "Mosvar", "Hollin", "Reeve"),
    ("Pavel Orn", "Nardia", "Istmere", "Cobb"),
    ("Quinn Yale", "Opalia", "Jurro", "Sand"),
    ("Rhea Lund", "Pellis", "Kesk", "Weir"),
    ("Soren Kai", "Quarn", "Lattice", "Moor"),
    ("Tilda Rowe", "Rusta", "Mendle", "Fitch"),
    ("Ulf Berg", "Salvia", "Norwick", "Gale"),
    ("Vera Lind", "Tovar", "Oberlin", "Hask"),
    ("Wim Daal", "Umbria", "Pradel", "Knox"),
    ("Xena Holt", "Varda", "Quorin", "Lisle"),
]

CHAIN = """
from __future__ import annotations

import json
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    person: str
    passages: list[str]
    country: str
    facts: list[str]
    answer: str


def build(ctx: Any) -> StateGraph:
    table = json.loads(ctx.resource("corpus/facts.json").read_text(encoding="utf-8"))
    extract_tpl = ctx.prompt("extract", "question", "passages")
    answer_tpl = ctx.prompt("answer", "question", "passages")
    extract_llm = ctx.llm(temperature=0.0, max_tokens=200)
    answer_llm = ctx.llm(temperature=__TEMP__, max_tokens=200)
    k = int(ctx.params.get("k", 8))

    def search(query: str, state: Any = None) -> list[str]:
        return list(table.get(str(query).strip().rstrip("."), []))[:k]

    ctx.register("search", search)

    async def extract(state: State) -> dict[str, Any]:
        q = f"In which country was {state['person']} born?"
        reply = await extract_llm.ainvoke(
            extract_tpl.render(question=q, passages="\\n".join(state["passages"]))
        )
        return {"country": str(reply.content).strip()}

    def lookup(state: State) -> dict[str, Any]:
        return {"facts": search(state.get("country", ""))}

    async def answer(state: State) -> dict[str, Any]:
        q = f"What is the capital city of {state.get('country', '')}?"
        reply = await answer_llm.ainvoke(
            answer_tpl.render(question=q, passages="\\n".join(state.get("facts", [])))
        )
        return {"answer": str(reply.content).strip()}

    graph = StateGraph(State)
    graph.add_node("extract", extract)
    graph.add_node("lookup", lookup)
    graph.add_node("answer", answer)
    graph.add_edge(START, "extract")
    graph.add_edge("extract", "lookup")
    graph.add_edge("lookup", "answer")
    graph.add_edge("answer", END)
    return graph
"""

SCORER = """
def score(example, prediction):
    return float(str(prediction or "").strip().lower() == example.label["answer"].lower())
"""

CHECKS = """
from fapo import oracle


@oracle("extract")
def right_country(example, state):
    return {"country": example.label["country"]}


@oracle("answer")
def right_answer(example, state):
    return {"answer": example.label["answer"]}
"""

GOOD_EXTRACT = "Answer with only the answer.\n\nQuestion: {question}\n\n{passages}\n"
BAD_EXTRACT = "Read the passages and answer.\n\nQuestion: {question}\n\n{passages}\n"
ANSWER = "Answer with only the answer.\n\nQuestion: {question}\n\n{passages}\n"


def _facts(country: str, capital: str, other: str, decoys: int) -> list[str]:
    tag = country[:3].lower()
    out = [f"[{tag}d{i}] {country} exports wool and grain." for i in range(decoys)]
    # The second city shares the question's words less than the capital does, so at
    # temperature 0 the capital wins; a flip (temperature > 0) picks the second city.
    out.append(f"[{tag}c] The capital city of {country} is {capital}, near {other}.")
    return out


def make_tenant(
    root: Path,
    kind: str,
    *,
    with_checks: bool = True,
    temp_param: bool = False,
    n: int = 24,
) -> Path:
    """Write tenant `kind` (upstream | noise | depth | clean) under root; returns its folder."""
    t = root / f"t-{kind}{'' if with_checks else '-nochecks'}{'-tparam' if temp_param else ''}"
    (t / "prompts").mkdir(parents=True)
    (t / "corpus").mkdir()
    (t / "data").mkdir()
    decoys = 3 if kind == "depth" else 0
    table = {c: _facts(c, cap, other, decoys) for _, c, cap, other in PEOPLE}
    (t / "corpus" / "facts.json").write_text(json.dumps(table), encoding="utf-8")
    rows = []
    for i, (person, country, capital, _) in enumerate(PEOPLE[:n]):
        passages = [
            f"[b{i}] {person} was born in {country}.",
            f"[x{i}] {person} studied music for years.",
        ]
        rows.append(
            {
                "id": f"e{i:02d}",
                "inputs": {"person": person, "passages": passages},
                "label": {"answer": capital, "country": country},
            }
        )
    # val and test hold the same people under their own ids (a row may sit in one split only)
    test = [{**r, "id": "t" + r["id"]} for r in rows[16:]]
    for split, part in (("train", rows[:16]), ("val", rows[16:]), ("test", test)):
        (t / "data" / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in part), encoding="utf-8"
        )
    temp = (
        "float(ctx.params['temperature'])" if temp_param else ("1.0" if kind == "noise" else "0.0")
    )
    (t / "chain.py").write_text(CHAIN.replace("__TEMP__", temp), encoding="utf-8")
    (t / "scorer.py").write_text(SCORER, encoding="utf-8")
    (t / "prompts" / "extract.md").write_text(
        BAD_EXTRACT if kind == "upstream" else GOOD_EXTRACT, encoding="utf-8"
    )
    (t / "prompts" / "answer.md").write_text(ANSWER, encoding="utf-8")
    params: dict[str, object] = {}
    decl: list[str] = []
    if kind == "depth":
        params["k"] = 1
        decl.append("  k: {type: int, min: 1, max: 8}")
    if temp_param:
        params["temperature"] = 1.0
        decl.append("  temperature: {type: float, min: 0.0, max: 1.0}")
    (t / "params.yaml").write_text(
        "".join(f"{k}: {v}\n" for k, v in params.items()) or "{}\n", encoding="utf-8"
    )
    spec = [
        f"name: t-{kind}",
        "models: {task: 'sim:default'}",
        "prediction: answer",
        "scope: [prompt, parameter, structure]",
        "acceptance: {min_improvement: 0.02, alpha: 0.1}",
        "target_score: 0.99",
    ]
    if decl:
        spec.append("params:\n" + "\n".join(decl))
    if with_checks:
        (t / "checks.py").write_text(CHECKS, encoding="utf-8")
        spec.append("checks: checks.py")
    (t / "tenant.yaml").write_text("\n".join(spec) + "\n", encoding="utf-8")
    return t

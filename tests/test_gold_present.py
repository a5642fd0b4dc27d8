"""The ladder's "gold present but badly formatted" rung for labels and predictions of any shape.

The gold is found by structure (the label field the prediction is compared to, a dict's only
field, a dict prediction field by field), never by guessing key names; a short or common gold, a
gold named beside another category, or a multi-field label with another field plainly wrong does
not count. End to end: a generated tenant (simulated model sim:default, not an LLM) whose labels
use their own key names and whose answer prompt makes the model verbose.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from tenant_kit import invented, write_splits

from fapo.attribute import attribute, classify
from fapo.evaluate import evaluate
from fapo.gold import gold_present, gold_strings
from fapo.tenant import load_tenant

# -- where the label says the answer is --------------------------------------------------------


def test_gold_strings_keeps_the_shapes_it_read_before() -> None:
    assert gold_strings("Paris") == ["Paris"]
    assert gold_strings(["Paris", "City of Paris"]) == ["Paris", "City of Paris"]
    assert gold_strings({"answer": "Paris", "supporting": ["p1", "p2"]}) == ["Paris"]
    assert gold_strings({"answers": ["Paris", "Paname"], "hops": 2}) == ["Paris", "Paname"]


@pytest.mark.parametrize(
    ("label", "keys", "gold"),
    [
        ({"department": "billing"}, (), ["billing"]),  # a dict's only scalar field
        ({"city": "Lyon"}, (), ["Lyon"]),
        ({"verdict": "supported", "evidence_id": 3}, ("verdict",), ["supported"]),
        ({"verdict": "supported", "evidence_id": 3}, ("evidence_id",), ["3"]),  # numbers count
        ({"route": "fault", "outcome": "screen"}, ("outcome",), ["screen"]),
        # the field the prediction is compared to beats a conventional name
        ({"answer": "Paris", "country": "France"}, ("country",), ["France"]),
        # one scalar field beside non-scalar ones
        ({"town": "Lyon", "evidence": ["e1", "e2"]}, (), ["Lyon"]),
    ],
)
def test_gold_strings_finds_the_field_by_structure(label, keys, gold) -> None:
    assert gold_strings(label, keys) == gold


def test_gold_strings_does_not_guess_between_fields_nothing_points_at() -> None:
    assert gold_strings({"verdict": "supported", "evidence_id": 3}) == []
    assert gold_strings({"verdict": "supported", "evidence_id": 3}, ("prediction",)) == []
    assert gold_strings(True) == [] and gold_strings(None) == []
    # a lone list field nothing names may be a set of requirements, not alternatives
    label = {"constraints": ["meadow", "harbor"]}
    assert gold_strings(label) == []
    assert not gold_present("<<Lisk>> The salt harbor lies past the meadow and the dunes.", label)
    assert gold_strings(label, ("constraints",)) == ["meadow", "harbor"]  # named: alternatives


# -- when the rung fires -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "label", "keys"),
    [
        ("The answer is Paris.", "Paris", ()),
        ("The answer is Paris.", ["Paris", "City of Paris"], ()),
        ("This ticket belongs to billing.", {"department": "billing"}, ("department",)),
        ("This ticket belongs to billing.", {"department": "billing"}, ()),
        ("It happened in Lyon, as the passage says.", {"city": "Lyon"}, ("city",)),
        ("The claim is supported.", {"verdict": "supported", "evidence_id": 3}, ("verdict",)),
        ("The answer is 42.", 42, ()),
        ("The answer is 3.", "3", ()),  # a short gold counts in a short prediction
        ("Yes, it is.", "yes", ()),
    ],
)
def test_a_longer_prediction_holding_the_gold_fires(prediction, label, keys) -> None:
    assert gold_present(prediction, label, keys)


def test_a_dict_prediction_is_compared_field_by_field() -> None:
    label = {"verdict": "supported", "evidence_id": 3}
    assert gold_present({"verdict": "The claim is supported.", "evidence_id": 3}, label)
    # the same as a JSON object's text
    assert gold_present(json.dumps({"verdict": "It is supported.", "evidence_id": 3}), label)
    # both fields wrong only in their format
    assert gold_present({"verdict": "The claim is supported.", "evidence_id": "id 3"}, label)


@pytest.mark.parametrize(
    ("prediction", "label", "keys"),
    [
        ("The answer is Lyon.", "Paris", ()),  # gold absent
        ("Paris", "Paris", ()),  # equal
        ("paris.", "Paris", ()),  # equal but for case and punctuation: not a format to fix here
        ("Comparisons with Parisian life", "Paris", ()),  # not a whole word
        ("This ticket belongs to billing.", {"verdict": "billing", "team": "ops"}, ()),  # no field
        (
            {"verdict": "supported", "evidence_id": 3},
            {"verdict": "supported", "evidence_id": 3},
            (),
        ),
    ],
)
def test_no_gold_or_nothing_to_reformat_does_not_fire(prediction, label, keys) -> None:
    assert not gold_present(prediction, label, keys)


def test_a_multi_field_label_fires_only_when_every_wrong_field_holds_its_gold() -> None:
    label = {"verdict": "supported", "evidence_id": 3}
    # the verdict is only verbose, but the evidence id is plainly wrong: not a format problem
    assert not gold_present({"verdict": "The claim is supported.", "evidence_id": 4}, label)
    # the verdict is right, the evidence id's gold is absent from its field
    assert not gold_present({"verdict": "supported", "evidence_id": "see line 7"}, label)
    # a wrong set of items is wrong content
    assert not gold_present({"ids": ["e1", "e9"]}, {"ids": ["e1", "e2"]})


def test_a_short_or_common_gold_inside_a_long_answer_proves_nothing() -> None:
    long_3 = "Step 1 reads the first passage and step 2 the second, so the total comes to 3 apples"
    assert not gold_present(long_3, "3")
    assert not gold_present("Yes. The passage says the museum was not closed on that day.", "yes")
    assert not gold_present("A good question; the passages point to option C.", "a")
    assert not gold_present("3 or 3: hard to tell", "3")  # a short gold twice
    # a distinctive gold counts however long the output
    assert gold_present(long_3.replace("3 apples", "Vellmoor apples"), "Vellmoor")


def test_a_category_named_beside_another_one_does_not_show_the_gold() -> None:
    cats = frozenset({"billing", "technical", "not enough info", "info"})
    pred = "It could be billing or technical; I would say technical."
    assert gold_present(pred, "billing")  # with no knowledge of the categories
    assert not gold_present(pred, "billing", categories=lambda path: cats)
    assert gold_present("This is billing.", "billing", categories=lambda path: cats)
    # a category inside the gold ("info" in "not enough info") is not a rival
    assert gold_present("There is not enough info.", "not enough info", (), lambda path: cats)
    # the categories of a field are asked for by its label path
    seen: list[tuple[str, ...]] = []

    def spy(path: tuple[str, ...]) -> frozenset[str]:
        seen.append(path)
        return frozenset()

    gold_present({"dept": "The dept is billing."}, {"dept": "billing", "n": 1}, (), spy)
    assert seen == [("dept",)]


# -- end to end: a tenant whose labels use their own key names ---------------------------------

CHAIN = """
from __future__ import annotations

import json
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    person: str
    passages: list[str]
    __KEY__: str
    reply: str


def build(ctx: Any) -> StateGraph:
    table = json.loads(ctx.resource("corpus/facts.json").read_text(encoding="utf-8"))
    tpl = ctx.prompt("locate", "question", "passages")
    llm = ctx.llm(temperature=0.0, max_tokens=200)

    def retrieve(state: State) -> dict[str, Any]:
        return {"passages": list(table.get(state["person"], []))}

    async def locate(state: State) -> dict[str, Any]:
        q = f"In which town does {state['person']} live?"
        reply = await llm.ainvoke(tpl.render(question=q, passages="\\n".join(state["passages"])))
        return {"__KEY__": str(reply.content).strip()}

    def finish(state: State) -> dict[str, Any]:
        return {"reply": state["__KEY__"]}

    graph = StateGraph(State)
    graph.add_node("retrieve", retrieve)
    graph.add_node("locate", locate)
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "locate")
    if __FINISH__:
        graph.add_node("finish", finish)
        graph.add_edge("locate", "finish")
        graph.add_edge("finish", END)
    else:
        graph.add_edge("locate", END)
    return graph
"""

SCORER = """
def score(example, prediction):
    return float(str(prediction or "").strip().lower() == example.label["__KEY__"].lower())
"""

VERBOSE = "Read the passages and answer.\n\nQuestion: {question}\n\n{passages}\n"
TERSE = "Answer with only the answer.\n\nQuestion: {question}\n\n{passages}\n"


def _tenant(root: Path, key: str, *, finish: bool, prompt: str = VERBOSE) -> Path:
    """People living in invented towns of invented regions. The label names two fields
    ({key: town, "region": region}); the answer step `locate` writes state[key]. Without
    `finish` that key is the prediction; with it, a code step copies it to `reply` (the
    prediction) and tenant.yaml declares `locate`'s output key instead."""
    rng = random.Random(7)
    t = root / f"verbose-{key}-{int(finish)}-{int(prompt == VERBOSE)}"
    for sub in ("prompts", "corpus", "data"):
        (t / sub).mkdir(parents=True)
    facts, rows = {}, []
    for i in range(24):
        person = f"{invented(rng, 2)} {invented(rng, 3)}"
        town, region = invented(rng, 3), invented(rng, 2)
        facts[person] = [
            f"[f{i}] {person} lives in {town}.",
            f"[r{i}] {person} often walks across {region} county.",
        ]
        rows.append(
            {
                "id": f"v{i:02d}",
                "inputs": {"person": person},
                "label": {key: town, "region": region},
            }
        )
    (t / "corpus" / "facts.json").write_text(json.dumps(facts), encoding="utf-8")
    write_splits(t, rows, {"train": 12, "val": 6, "test": 6})
    chain = CHAIN.replace("__KEY__", key).replace("__FINISH__", str(finish))
    (t / "chain.py").write_text(chain, encoding="utf-8")
    (t / "scorer.py").write_text(SCORER.replace("__KEY__", key), encoding="utf-8")
    (t / "prompts" / "locate.md").write_text(prompt, encoding="utf-8")
    (t / "params.yaml").write_text("{}\n", encoding="utf-8")
    spec = [
        f"name: {t.name}",
        "models: {task: 'sim:default'}",
        f"prediction: {'reply' if finish else key}",
        "scope: [prompt, parameter, structure]",
    ]
    if finish:
        spec.append(f"steps:\n  locate: {{output: {key}}}")
    (t / "tenant.yaml").write_text("\n".join(spec) + "\n", encoding="utf-8")
    return t


@pytest.mark.parametrize("finish", [False, True], ids=["prediction-key", "declared-output"])
def test_a_verbose_final_prompt_is_attributed_to_its_step_at_the_prompt_level(
    tmp_path: Path, finish: bool
) -> None:
    tenant = load_tenant(_tenant(tmp_path, "town", finish=finish))
    out = tmp_path / "eval"
    evaluate(tenant, "train", out_dir=out, use_cache=False)
    report = attribute(tenant, out / "results.jsonl")
    assert report["failures"] == 12  # every answer is verbose
    assert [
        (c["step"], c["cause"], c["level"], len(c["example_ids"])) for c in report["clusters"]
    ] == [("locate", "gold present but output badly formatted", "prompt", 12)]
    # the prompt that asks for only the answer passes them all: the failures were the format
    terse = load_tenant(_tenant(tmp_path, "town", finish=finish, prompt=TERSE))
    evaluate(terse, "train", out_dir=tmp_path / "terse", use_cache=False)
    assert attribute(terse, tmp_path / "terse" / "results.jsonl")["failures"] == 0


def test_a_label_field_nothing_points_at_is_not_guessed(tmp_path: Path) -> None:
    """The same verbose failures, but the prediction key names no label field and no step
    declares one: two scalar label fields and no structure, so the rung stays silent."""
    tenant = load_tenant(_tenant(tmp_path, "town", finish=True))
    rec = next(
        json.loads(line)
        for line in _evaluated(tenant, tmp_path).read_text(encoding="utf-8").splitlines()
    )
    ex = next(e for e in tenant.examples("train") if e.id == rec["id"])
    assert classify(tenant, rec, ex).cause.startswith("gold present")
    bare = dataclasses.replace(tenant, spec=tenant.spec.model_copy(update={"steps": {}}))
    assert classify(bare, rec, ex).cause == "unexplained"


def _evaluated(tenant, tmp_path: Path) -> Path:
    out = tmp_path / "eval-one"
    evaluate(tenant, "train", out_dir=out, use_cache=False)
    return out / "results.jsonl"


def test_the_ladder_compares_a_dict_prediction_field_by_field(tmp_path: Path) -> None:
    """Through `classify`: a final step whose output is a dict with the label's field names."""
    tenant = load_tenant(_tenant(tmp_path, "town", finish=False))
    ex = next(iter(tenant.examples("train")))
    town, region = ex.label["town"], ex.label["region"]

    def rec(pred: dict[str, str]) -> dict:
        steps = [
            {"step": "retrieve", "update": {"passages": []}, "error": None, "calls": []},
            {"step": "locate", "update": {"town": pred}, "error": None, "calls": [{}]},
        ]
        return {"inputs": ex.inputs, "steps": steps, "prediction": pred, "error": None}

    c = classify(tenant, rec({"town": f"It is {town}.", "region": region}), ex)
    assert (c.step, c.cause, c.level) == (
        "locate",
        "gold present but output badly formatted",
        "prompt",
    )
    c = classify(tenant, rec({"town": f"It is {town}.", "region": "Elsewhere"}), ex)
    assert (c.step, c.cause) == ("locate", "unexplained")

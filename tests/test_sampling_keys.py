"""Sampling keys are measured from the built chain, never read from a key's name
(fapo/param_effects.py): attribution's interventions move only those down (parameter_moves), and
the built-in agent does not race raising one where no traced call samples (_luck_only).

The test tenant (simulated model sim:default, not an LLM) names its keys so that a name-based
rule would get every one wrong: `creativity` is the writer's temperature; `max_temperature_c`
filters forecast rows in code; `temperature_note_tokens` is the writer's max_tokens; `late_t` is
a temperature the chain reads only while it runs; `focus` lowers the checker's temperature as it
rises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import fapo.param_effects
from fapo.agents import builtin
from fapo.brief import Incumbent, build_brief
from fapo.interventions import parameter_moves
from fapo.param_effects import sampling_keys
from fapo.settings import load_settings
from fapo.tenant import Tenant, load_tenant

CHAIN = """
from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

FORECAST = {"Velmora": [("mon", 18), ("tue", 31), ("wed", 24)]}


class State(TypedDict, total=False):
    city: str
    days: list[str]
    note: str
    answer: str


def build(ctx: Any) -> StateGraph:
    limit = int(ctx.params["max_temperature_c"])
    tpl = ctx.prompt("note", "city", "days")
    writer = ctx.llm(
        temperature=float(ctx.params["creativity"]),
        max_tokens=int(ctx.params["temperature_note_tokens"]),
    )
    checker = ctx.llm(temperature=1.0 - float(ctx.params["focus"]), max_tokens=16)

    def days(state: State) -> dict[str, Any]:
        rows = FORECAST.get(state["city"], [])
        return {"days": [d for d, c in rows if c <= limit]}

    async def note(state: State) -> dict[str, Any]:
        text = tpl.render(city=state["city"], days=", ".join(state["days"]))
        reply = await writer.ainvoke(text)
        late = ctx.llm(temperature=float(ctx.params["late_t"]), max_tokens=16)
        again = await late.ainvoke(text)
        return {"note": str(reply.content) or str(again.content)}

    async def check(state: State) -> dict[str, Any]:
        reply = await checker.ainvoke(state["note"])
        return {"answer": str(reply.content).strip()}

    graph = StateGraph(State)
    graph.add_node("days", days)
    graph.add_node("note", note)
    graph.add_node("check", check)
    graph.add_edge(START, "days")
    graph.add_edge("days", "note")
    graph.add_edge("note", "check")
    graph.add_edge("check", END)
    return graph
"""

TENANT = """\
name: weather
models: {task: "sim:default"}
prediction: answer
scorer: scorer.py
scope: [prompt, parameter]
params:
  creativity: {type: float, min: 0.0, max: 1.0}
  max_temperature_c: {type: int, min: 20, max: 40}
  temperature_note_tokens: {type: int, min: 16, max: 256}
  late_t: {type: float, min: 0.0, max: 1.0}
  focus: {type: float, min: 0.0, max: 1.0}
"""

PARAMS = {
    "creativity": 0.5,
    "max_temperature_c": 25,
    "temperature_note_tokens": 64,
    "late_t": 0.0,
    "focus": 1.0,
}

SCORER = """
def score(example, prediction):
    return float(str(prediction or "").strip() == str(example.label))
"""


@pytest.fixture
def tenant(tmp_path: Path) -> Tenant:
    t = tmp_path / "weather"
    (t / "prompts").mkdir(parents=True)
    (t / "data").mkdir()
    (t / "chain.py").write_text(CHAIN, encoding="utf-8")
    (t / "tenant.yaml").write_text(TENANT, encoding="utf-8")
    (t / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False), encoding="utf-8")
    (t / "scorer.py").write_text(SCORER, encoding="utf-8")
    (t / "prompts" / "note.md").write_text("Write a short note.\n{city}\n{days}\n")
    for i, split in enumerate(("train", "val", "test")):
        row = {"id": f"w{i}", "inputs": {"city": "Velmora"}, "label": "mon"}
        (t / "data" / f"{split}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return load_tenant(t, load_settings(tmp_path))


def test_the_key_that_sets_a_temperature_is_found_whatever_its_name(tenant: Tenant) -> None:
    # not max_temperature_c (a code filter), temperature_note_tokens (max_tokens), late_t (read
    # only at run time: the safe side), focus (raises no temperature)
    assert sampling_keys(tenant) == {"creativity"}


def test_interventions_move_only_the_sampling_key_down(tenant: Tenant) -> None:
    moves: dict[str, list[Any]] = {}
    for name, value in parameter_moves(tenant):
        moves.setdefault(name, []).append(value)
    assert moves["creativity"] == [0.0]
    assert moves["max_temperature_c"] == [20, 30, 40]
    assert moves["temperature_note_tokens"] == [16, 136, 256]
    assert moves["late_t"] == [0.5, 1.0]  # the current 0.0 is no move
    assert moves["focus"] == [0.0, 0.5]


def test_candidate_chain_code_is_not_built_so_every_range_gets_its_full_grid(
    tenant: Tenant,
) -> None:
    candidate = tenant.variant({"chain.py": tenant.files["chain.py"] + "\n# edited\n"})
    assert sampling_keys(candidate) == frozenset()
    assert [v for n, v in parameter_moves(candidate) if n == "creativity"] == [0.0, 1.0]


def test_the_measurement_is_remembered_per_variant(tenant: Tenant, monkeypatch) -> None:
    first = sampling_keys(tenant)

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("built again")

    monkeypatch.setattr(fapo.param_effects, "model_settings", refuse)
    assert sampling_keys(tenant) == first
    moved = tenant.variant({"params.yaml": yaml.safe_dump({**PARAMS, "creativity": 0.2})})
    with pytest.raises(AssertionError, match="built again"):
        sampling_keys(moved)  # another params.yaml: another variant, measured again


def _brief(tenant: Tenant, tmp_path: Path, temperature: float) -> Any:
    inc = Incumbent(id="v000", tenant=tenant, scores={}, train_results=tmp_path / "none.jsonl")
    brief = build_brief(inc, "parameter", None, [])
    call = {"prompt": "Write a short note.", "output": "", "temperature": temperature}
    trace = {"id": "w0", "steps": [{"step": "note", "update": "{}", "calls": [call]}]}
    return brief.model_copy(update={"traces": [trace]})


@pytest.mark.parametrize(
    ("name", "value", "temperature", "luck"),
    [
        ("creativity", 0.8, 0.0, True),  # more randomness where nothing samples
        ("creativity", 0.8, 0.7, False),  # a traced call samples: draws are compared
        ("creativity", 0.2, 0.0, False),  # lowered
        ("max_temperature_c", 30, 0.0, False),  # a code filter: raced
        ("temperature_note_tokens", 128, 0.0, False),  # a token limit: raced
        ("late_t", 0.5, 0.0, False),  # read only at run time: not measured, raced
    ],
)
def test_luck_only_skips_raising_the_measured_sampling_key_only(
    tenant: Tenant, tmp_path: Path, name: str, value: Any, temperature: float, luck: bool
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(tenant.files["params.yaml"], encoding="utf-8")
    brief = _brief(tenant, tmp_path, temperature)
    assert brief.sampling == ["creativity"]
    new = yaml.safe_dump({**PARAMS, name: value}, sort_keys=False)
    assert builtin._luck_only({"params.yaml": new}, ws, brief) is luck


def test_a_brief_on_candidate_code_names_no_sampling_key_so_the_raise_is_raced(
    tenant: Tenant, tmp_path: Path
) -> None:
    candidate = tenant.variant({"chain.py": tenant.files["chain.py"] + "\n# edited\n"})
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "params.yaml").write_text(tenant.files["params.yaml"], encoding="utf-8")
    brief = _brief(candidate, tmp_path, 0.0)
    assert brief.sampling == []
    new = yaml.safe_dump({**PARAMS, "creativity": 0.8}, sort_keys=False)
    assert not builtin._luck_only({"params.yaml": new}, ws, brief)

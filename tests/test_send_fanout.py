"""LangGraph `Send` map-reduce fan-outs end to end.

A step fanned out with `Send` runs as several tasks of one name in one superstep, each with its
own input and its own model calls. fapo treats them as one step (fapo/fork.py): an oracle writes
the step's update once for all instances, a resample redraws every instance and no sibling, and
a re-roll compares the instances' results as a set. The first tests pin that on a graph without a
model; the rest run tests/send_tenant.py (three organisations -> `read` per organisation via
`Send`, sim:default -> a reducer -> `span`, code) through evaluation, interventions, attribution
and the built-in loop.
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
import yaml
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from send_tenant import write

from fapo import fork, reroll, sim
from fapo.attribute import attribute
from fapo.evaluate import evaluate
from fapo.interventions import DRAW_BASE, InterventionRunner, Kind
from fapo.loop import RunOptions, run
from fapo.runtime import SAMPLE
from fapo.settings import Settings, load_settings
from fapo.tenant import Tenant, load_tenant

# --- a Send graph without a model -------------------------------------------------------------


class State(TypedDict, total=False):
    items: list[int]
    vals: Annotated[list[int], operator.add]
    note: int
    out: int


def _graph(calls: list[str]) -> Any:
    """split -> read once per item (Send) and note, in one superstep -> out, a join waiting on
    both (`add_edge([read, note], out)`). `calls` logs every node run; `read` and `note` depend
    on the sample index in force, like a model sampling."""

    def split(s: State) -> dict[str, Any]:
        calls.append("split")
        return {"items": s["items"]}

    def fan(s: State) -> list[Any]:
        return [Send("read", {"item": i}) for i in s["items"]] + ["note"]

    def read(item: dict[str, int]) -> dict[str, Any]:
        calls.append("read")
        return {"vals": [item["item"] * 10 + SAMPLE.get()]}

    def note(s: State) -> dict[str, Any]:
        calls.append("note")
        return {"note": 1000 + SAMPLE.get()}

    def out(s: State) -> dict[str, Any]:
        calls.append("out")
        return {"out": sum(s.get("vals", []))}

    g = StateGraph(State)
    for name, fn in (("split", split), ("read", read), ("note", note), ("out", out)):
        g.add_node(name, fn)
    g.add_edge(START, "split")
    g.add_conditional_edges("split", fan, ["read", "note"])
    g.add_edge(["read", "note"], "out")
    g.add_edge("out", END)
    return g.compile(checkpointer=InMemorySaver())


THREAD = {"configurable": {"thread_id": "t"}}


async def _recorded(app: Any) -> dict[str, Any]:
    """Run items [1, 2, 3]; the checkpoint right before each step."""
    await app.ainvoke({"items": [1, 2, 3]}, THREAD)
    before: dict[str, Any] = {}
    async for snap in app.aget_state_history(THREAD):
        for nxt in snap.next:
            before[nxt] = snap
    return before


def test_the_instances_of_a_send_step_are_tasks_of_one_name_in_one_superstep() -> None:
    before = asyncio.run(_recorded(_graph([])))
    assert sorted(before["read"].next) == ["note", "read", "read", "read"]


def test_an_update_at_a_send_step_is_written_once_for_all_its_instances() -> None:
    async def go() -> tuple[dict[str, Any], list[str]]:
        calls: list[str] = []
        app = _graph(calls)
        before = await _recorded(app)
        calls.clear()
        cfg = await fork.with_update(app, before["read"], "read", {"vals": [7, 8]})
        await app.ainvoke(None, cfg)
        return dict((await app.aget_state(THREAD)).values), calls

    values, calls = asyncio.run(go())
    # once through the reducer (not once per instance), the sibling's recorded 1000 kept
    assert values["vals"] == [7, 8] and values["note"] == 1000 and values["out"] == 15
    assert calls == ["out"]  # no instance of read ran, nor note; the join fired once


def test_an_update_at_a_join_behind_a_barrier_holds() -> None:
    """`update_state(as_node=out)` leaves the join's barrier unconsumed: run on, `out` runs
    again and overwrites the value (what the oracle at a join did before)."""

    async def go() -> tuple[int, int, list[str]]:
        calls: list[str] = []
        app = _graph(calls)
        before = await _recorded(app)
        plain = await app.aupdate_state(before["out"].config, {"out": 99}, as_node="out")
        await app.ainvoke(None, plain)
        overwritten = (await app.aget_state(THREAD)).values["out"]
        calls.clear()
        cfg = await fork.with_update(app, before["out"], "out", {"out": 99})
        await app.ainvoke(None, cfg)
        return overwritten, (await app.aget_state(THREAD)).values["out"], calls

    overwritten, held, calls = asyncio.run(go())
    assert overwritten == 60 and held == 99
    assert calls == []


def test_an_update_upstream_of_the_fan_out_sends_from_the_new_state() -> None:
    async def go() -> tuple[dict[str, Any], list[str]]:
        calls: list[str] = []
        app = _graph(calls)
        before = await _recorded(app)
        calls.clear()
        cfg = await fork.with_update(app, before["split"], "split", {"items": [4, 5]})
        await app.ainvoke(None, cfg)
        return dict((await app.aget_state(THREAD)).values), calls

    values, calls = asyncio.run(go())
    assert sorted(values["vals"]) == [40, 50] and values["out"] == 90
    assert Counter(calls) == {"read": 2, "note": 1, "out": 1}


def test_alone_redraws_every_instance_of_a_send_step_and_no_sibling() -> None:
    async def go(step: str) -> tuple[dict[str, Any], list[str]]:
        calls: list[str] = []
        app = _graph(calls)
        before = await _recorded(app)
        calls.clear()
        token = SAMPLE.set(5)
        try:
            start = await fork.alone(app, before[step], {step})
            await app.ainvoke(None, start, interrupt_after=[step])
        finally:
            SAMPLE.reset(token)
        await app.ainvoke(None, THREAD)
        return dict((await app.aget_state(THREAD)).values), calls

    values, calls = asyncio.run(go("read"))
    assert sorted(values["vals"]) == [15, 25, 35] and values["note"] == 1000
    assert Counter(calls) == {"read": 3, "out": 1}
    values, calls = asyncio.run(go("note"))
    assert sorted(values["vals"]) == [10, 20, 30] and values["note"] == 1005
    assert Counter(calls) == {"note": 1, "out": 1}


def test_a_send_step_counts_as_re_rolled_only_when_its_instances_changed() -> None:
    """An intervention upstream that leaves the instances' results as recorded re-rolled
    nothing (compared instance by instance against the first recorded instance, every Send step
    looked re-rolled); one that changes an input did."""

    async def go(items: list[int]) -> Any:
        app = _graph([])
        before = await _recorded(app)
        cfg = await fork.with_update(app, before["split"], "split", {"items": items})
        await app.ainvoke(None, cfg)
        end = (await app.aget_state(THREAD)).config
        return await reroll.rerolled(reroll.Branch(app, end), "split", before, {"read", "note"})

    assert asyncio.run(go([3, 1, 2])) == []
    found = asyncio.run(go([1, 2, 4]))
    assert [rolled for _, rolled in found] == [{"read"}]


def test_a_send_steps_checks_see_every_instance_reduced() -> None:
    """Interventions judge a step's checks on the state after its superstep (from the run's
    checkpoints): all instances' writes reduced, the sibling's too. Applying streamed updates in
    order (what they did) showed the first instance's update alone."""
    from fapo.interventions import _states_after

    async def go() -> dict[str, Any]:
        app = _graph([])
        await _recorded(app)
        return await _states_after(app, THREAD)

    after = asyncio.run(go())
    assert sorted(after["read"]["vals"]) == [10, 20, 30] and after["read"]["note"] == 1000
    assert after["out"]["out"] == 60 and after["split"]["items"] == [1, 2, 3]


# --- the send-span tenant on the simulated model ----------------------------------------------


def _settings(tmp: Path) -> Settings:
    (tmp / "tenants").mkdir(parents=True, exist_ok=True)
    (tmp / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n'
    )
    return load_settings(tmp)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = _settings(tmp_path_factory.mktemp("send"))
    write(settings.tenants_dir)
    write(settings.tenants_dir, sibling=True)
    return settings


def _records(tenant: Tenant, out: Path, **kw: Any) -> dict[str, dict[str, Any]]:
    evaluate(tenant, "train", out_dir=out, use_cache=False, **kw)
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


@pytest.mark.parametrize("candidate", [False, True])
def test_evaluation_records_every_instance_with_its_own_calls(
    project, tmp_path: Path, candidate: bool
) -> None:
    """In process, and in the sandboxed worker that evaluates candidate chain code."""
    from fapo.candidate import is_candidate_code

    tenant = load_tenant("send-span-sib", project)
    if candidate:
        tenant = tenant.variant({"chain.py": tenant.files["chain.py"] + "\n# edited\n"})
    assert is_candidate_code(tenant) == candidate
    records = _records(tenant, tmp_path, limit=4)
    for rec in records.values():
        names = rec["inputs"]["names"]
        assert Counter(s["step"] for s in rec["steps"]) == {
            "split": 1,
            "read": len(names),
            "note": 1,
            "span": 1,
        }
        reads = [s for s in rec["steps"] if s["step"] == "read"]
        got = []
        for s in reads:
            assert len(s["calls"]) == 1 and s["calls"][0]["node"] == "read"
            (one,) = s["update"]["years"]
            got.append(one["name"])
            # the instance's call is the one that read this instance's organisation
            assert f"the {one['name']} first founded" in s["calls"][0]["messages"][0]["content"]
        assert sorted(got) == sorted(names)
        notes = [s for s in rec["steps"] if s["step"] == "note"]
        assert len(notes[0]["calls"]) == 1 and notes[0]["calls"][0]["node"] == "note"


def _fails_at_temperature_zero(tenant: Tenant, out: Path) -> set[str]:
    cold = tenant.variant({"params.yaml": yaml.safe_dump({"read_temperature": 0.0})})
    return {i for i, r in _records(cold, out).items() if r["score"] < 0.999}


def test_oracles_at_the_send_step_and_the_join_repair_and_a_resample_redraws_only_the_send_step(
    project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = load_tenant("send-span-sib", project)
    deterministic = sorted(_fails_at_temperature_zero(tenant, tmp_path))
    assert deterministic
    ex = next(e for e in tenant.examples("train") if e.id == deterministic[0])
    drawn: list[tuple[str, int]] = []
    respond = sim.respond

    def spy(prompt: str, **kw: Any) -> Any:
        if kw.get("offset", 0) >= DRAW_BASE:
            drawn.append(("read" if "first founded" in prompt else "note", kw["offset"]))
        return respond(prompt, **kw)

    monkeypatch.setattr(sim, "respond", spy)
    runner = InterventionRunner(tenant, concurrency=1)
    verdict = runner.probe_many([ex], {"read": 0.6, "note": 1.0})[ex.id]
    trials = {(t.kind, t.step): t for t in verdict.trials}
    assert trials[(Kind.ORACLE, "read")].repaired  # all instances replaced, note kept
    assert trials[(Kind.ORACLE, "span")].repaired  # the join behind read and note
    resample = trials[(Kind.RESAMPLE, "read")]
    assert not resample.repaired  # the prompt defect holds at every draw
    names = len(ex.inputs["names"])
    by_draw = Counter(drawn)
    read_draws = sorted(o for (s, o) in by_draw if s == "read")
    note_draws = sorted(o for (s, o) in by_draw if s == "note")
    # every instance of read redrawn at each draw index; note drawn only by its own resample
    assert read_draws == list(range(DRAW_BASE, DRAW_BASE + resample.tries))
    assert all(by_draw[("read", o)] == names for o in read_draws)
    note = trials[(Kind.RESAMPLE, "note")]
    assert note_draws == list(range(DRAW_BASE, DRAW_BASE + note.tries))
    assert all(by_draw[("note", o)] == 1 for o in note_draws)
    assert (verdict.step, verdict.level) == ("read", "prompt")


def test_attribution_names_the_map_step_at_each_planted_level(project, tmp_path: Path) -> None:
    """Ground truth by evaluation: a failure that stays at temperature 0 is the prompt's (the
    stepping reader), one that goes is the noise's (a declared temperature: parameter)."""
    tenant = load_tenant("send-span", project)
    base = {i for i, r in _records(tenant, tmp_path / "base").items() if r["score"] < 0.999}
    prompt = _fails_at_temperature_zero(tenant, tmp_path / "cold") & base
    noise = base - prompt
    assert len(prompt) >= 4 and len(noise) >= 2  # both defects measurable on train
    report = attribute(
        tenant,
        tmp_path / "base" / "results.jsonl",
        "train",
        interventions=InterventionRunner(tenant),
    )
    got = {i: (c["step"], c["level"]) for c in report["clusters"] for i in c["example_ids"]}
    assert {i: got.get(i) for i in prompt} == dict.fromkeys(prompt, ("read", "prompt"))
    assert {i: got.get(i) for i in noise} == dict.fromkeys(noise, ("read", "parameter"))


def test_the_builtin_loop_fixes_both_defects_of_the_send_step(tmp_path: Path) -> None:
    """The prompt level drops the stepping sentence; the parameter level then sets the reader's
    temperature to 0 (no prompt move can hide a flip: the chain takes a bare year only)."""
    settings = _settings(tmp_path)
    write(settings.tenants_dir)
    res = run("send-span", RunOptions(agent="builtin", run_id="s"), settings)
    events = [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]
    props = {e["key"]: e["data"] for e in events if e["kind"] == "proposal"}
    levels = [props[v]["level"] for v in res.accepted]
    assert "parameter" in levels and "prompt" in levels, (res.accepted, res.stop_reason)
    files = res.run_dir / "variants" / res.accepted[-1] / "files"
    assert yaml.safe_load((files / "params.yaml").read_text())["read_temperature"] == 0.0
    assert "step by step" not in (files / "prompts" / "read.md").read_text()
    for split in ("val", "test"):
        summary = res.run_dir / "variants" / res.accepted[-1] / "eval" / split / "summary.json"
        assert json.loads(summary.read_text())["mean"] == 1.0

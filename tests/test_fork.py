"""fapo.fork on a real LangGraph fan-out/fan-in graph (no model): a fork at one step of a
superstep keeps its sibling's recorded run, and a superstep of one step forks as before."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from fapo import fork


class State(TypedDict, total=False):
    x: int
    a: int
    b: int
    out: int


def _graph(calls: list[str], fan_out: bool = True) -> Any:
    """up -> (left, right in one superstep) -> join; linear: up -> left -> join. `calls` logs
    every node run; `right` reads a counter so a re-run of it shows in its output."""
    runs = {"right": 0}

    def up(s: State) -> dict[str, Any]:
        calls.append("up")
        return {"x": s["x"] + 1}

    def left(s: State) -> dict[str, Any]:
        calls.append("left")
        return {"a": s["x"] * 10}

    def right(s: State) -> dict[str, Any]:
        calls.append("right")
        runs["right"] += 1
        return {"b": s["x"] * 100 + runs["right"]}

    def join(s: State) -> dict[str, Any]:
        calls.append("join")
        return {"out": s.get("a", 0) + s.get("b", 0)}

    g = StateGraph(State)
    for name, fn in (("up", up), ("left", left), ("right", right), ("join", join)):
        g.add_node(name, fn)
    g.add_edge(START, "up")
    g.add_edge("up", "left")
    if fan_out:
        g.add_edge("up", "right")
        g.add_edge(["left", "right"], "join")
    else:
        g.add_edge("left", "join")
    g.add_edge("join", END)
    return g.compile(checkpointer=InMemorySaver())


async def _recorded(app: Any, thread: dict[str, Any], step: str) -> Any:
    await app.ainvoke({"x": 1}, thread)
    return [s async for s in app.aget_state_history(thread) if step in s.next][-1]


def test_an_update_at_one_step_of_a_superstep_keeps_the_sibling_and_fires_the_join() -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any], list[str]]:
        calls: list[str] = []
        app = _graph(calls)
        thread = {"configurable": {"thread_id": "t"}}
        snap = await _recorded(app, thread, "left")
        assert set(snap.next) == {"left", "right"}
        calls.clear()
        # what interventions.py did before: the superstep closes without `right`, no join
        plain = await app.aupdate_state(snap.config, {"a": 7}, as_node="left")
        await app.ainvoke(None, plain)
        without = dict((await app.aget_state(thread)).values)
        forked = await fork.with_update(app, snap, "left", {"a": 7})
        await app.ainvoke(None, forked)
        return without, dict((await app.aget_state(thread)).values), calls

    without, values, calls = asyncio.run(go())
    assert "out" not in without and "b" not in without
    assert values == {"x": 2, "a": 7, "b": 201, "out": 208}  # right's recorded 201, not re-run
    assert calls == ["join"]


def test_alone_re_runs_only_the_chosen_step_of_its_superstep() -> None:
    async def go() -> tuple[dict[str, Any], list[str], dict[str, Any]]:
        calls: list[str] = []
        app = _graph(calls)
        thread = {"configurable": {"thread_id": "t"}}
        snap = await _recorded(app, thread, "right")
        calls.clear()
        start = await fork.alone(app, snap, {"right"})
        await app.ainvoke(None, start, interrupt_after=["right"])
        await app.ainvoke(None, thread)
        again = dict((await app.aget_state(thread)).values)
        ran = list(calls)
        # a plain re-run of the checkpoint runs both siblings
        calls.clear()
        await app.ainvoke(None, snap.config)
        return again, ran, {"calls": list(calls)}

    again, ran, plain = asyncio.run(go())
    assert sorted(ran) == ["join", "right"]
    assert again == {"x": 2, "a": 20, "b": 202, "out": 222}  # right re-ran, left kept its 20
    assert sorted(plain["calls"]) == ["join", "left", "right"]


def test_a_superstep_of_one_step_forks_as_update_state_and_a_plain_re_run() -> None:
    async def go() -> tuple[Any, Any, dict[str, Any]]:
        calls: list[str] = []
        app = _graph(calls, fan_out=False)
        thread = {"configurable": {"thread_id": "t"}}
        snap = await _recorded(app, thread, "left")
        start = await fork.alone(app, snap, {"left"})
        cfg = await fork.with_update(app, snap, "left", {"a": 7})
        await app.ainvoke(None, cfg)
        return snap.config, start, dict((await app.aget_state(thread)).values)

    config, start, values = asyncio.run(go())
    assert start == config
    assert values == {"x": 2, "a": 7, "out": 7}


def test_siblings_compare_in_one_order_whatever_order_they_finished_in() -> None:
    async def go(fan_out: bool) -> dict[str, Any]:
        app = _graph([], fan_out=fan_out)
        thread = {"configurable": {"thread_id": "t"}}
        await app.ainvoke({"x": 1}, thread)
        before: dict[str, Any] = {}
        async for snap in app.aget_state_history(thread):
            for nxt in snap.next:
                before[nxt] = snap
        return before

    before = asyncio.run(go(True))
    up, left, right, join = (
        ("up", {"x": 2}),
        ("left", {"a": 20}),
        ("right", {"b": 201}),
        ("join", {}),
    )
    finished = [up, left, right, join]
    swapped = [up, right, left, join]
    assert fork.in_superstep_order(swapped, before) == fork.in_superstep_order(finished, before)
    assert swapped[1] != finished[1]  # position by position they differ at the siblings
    # no siblings: the order is the chain's, untouched (even an odd one)
    linear = asyncio.run(go(False))
    assert fork.in_superstep_order([join, left, up], linear) == [join, left, up]

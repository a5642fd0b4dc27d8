"""fapo.reroll on a real LangGraph graph (no model): an upstream repair that only re-rolled a
downstream sampling step loses the credit, one that holds across that step's draws keeps it.

The graph is `pick -> (read, side in one superstep) -> out`; `read` "samples": its answer depends
on its input and on the sample index in force (fapo.runtime.SAMPLE), like a model at
temperature > 0, and `side` counts its runs (a redraw of `read` must not re-run it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from fapo import fork, reroll
from fapo.interventions import DRAW_BASE, Kind, Trial
from fapo.runtime import SAMPLE


class State(TypedDict, total=False):
    x: int
    answer: str
    side: int
    out: str


def _app(read_right: Callable[[int, int], bool], side_runs: list[int]) -> Any:
    def pick(s: State) -> dict[str, Any]:
        return {"x": s["x"]}

    def read(s: State) -> dict[str, Any]:
        return {"answer": "right" if read_right(s["x"], SAMPLE.get()) else "wrong"}

    def side(s: State) -> dict[str, Any]:
        side_runs.append(1)
        return {"side": len(side_runs)}

    def out(s: State) -> dict[str, Any]:
        return {"out": s["answer"]}

    g = StateGraph(State)
    for name, fn in (("pick", pick), ("read", read), ("side", side), ("out", out)):
        g.add_node(name, fn)
    g.add_edge(START, "pick")
    g.add_edge("pick", "read")
    g.add_edge("pick", "side")
    g.add_edge(["read", "side"], "out")
    g.add_edge("out", END)
    return g.compile(checkpointer=InMemorySaver())


class _Runner:
    """The part of InterventionRunner that reroll.settle uses; scores `key == "right"`."""

    draws = 3
    key = "out"

    async def _run(self, app: Any, inputs: Any, cfg: dict[str, Any], **kw: Any) -> list[Any]:
        return [c async for c in app.astream(inputs, cfg, stream_mode="updates", **kw)]

    def _score(self, ex: Any, values: dict[str, Any]) -> float:
        return 1.0 if values.get(self.key) == "right" else 0.0

    def _repaired(self, score: float, base: float) -> bool:
        return score > base


def _settled(
    read_right: Callable[[int, int], bool],
    sampling: frozenset[str] = frozenset({"read"}),
    ticks: list[int] | None = None,
) -> tuple[Trial, list[int]]:
    """Record a run at x=3 (it fails), resample `read` alone over 3 draws, run the oracle at
    `pick` (x=4) and settle it: the oracle trial after settling, and `side`'s runs."""

    async def go() -> tuple[Trial, list[int]]:
        side_runs: list[int] = []
        app = _app(read_right, side_runs)
        runner = _Runner()
        thread = {"configurable": {"thread_id": "t"}}
        await app.ainvoke({"x": 3}, thread)
        assert (await app.aget_state(thread)).values["out"] == "wrong"
        before = {}
        async for snap in app.aget_state_history(thread):
            for nxt in snap.next:
                before[nxt] = snap
        wins = 0
        for d in range(runner.draws):
            token = SAMPLE.set(DRAW_BASE + d)
            try:
                start = await fork.alone(app, before["read"], {"read"})
                await runner._run(app, None, start, interrupt_after=["read"])
            finally:
                SAMPLE.reset(token)
            await runner._run(app, None, thread)
            wins += runner._score(None, (await app.aget_state(thread)).values) > 0
        resample = Trial(
            kind=Kind.RESAMPLE, step="read", repaired=2 * wins >= 3, score=0, repairs=wins, tries=3
        )
        cfg = await fork.with_update(app, before["pick"], "pick", {"x": 4})
        await runner._run(app, None, cfg)
        end = await app.aget_state(thread)
        oracle = Trial(
            kind=Kind.ORACLE, step="pick", repaired=end.values["out"] == "right", score=1.0
        )
        assert oracle.repaired  # one draw at the new input lands right
        runs = len(side_runs)
        settled = await reroll.settle(
            runner,
            None,  # type: ignore[arg-type]
            [oracle, resample],
            {0: reroll.Branch(app, end.config)},
            order=["pick", "read", "side", "out"],
            before=before,
            sampling=sampling,
            base=0.0,
            draw_base=DRAW_BASE,
            tick=None if ticks is None else lambda: ticks.append(1),
        )
        return settled[0], side_runs[runs:]

    return asyncio.run(go())


def test_an_upstream_repair_that_only_re_rolls_a_noisy_step_is_not_credited() -> None:
    # `read` fails at one sample index in three whatever its input: the failure is its noise.
    ticks: list[int] = []
    trial, side_reruns = _settled(lambda x, i: (x + i) % 3 != 0, ticks=ticks)
    assert trial.rerolled == ["read"]
    assert len(ticks) == 2  # the run's clock is asked before each of the two extra draws
    assert (trial.repairs, trial.tries) == (2, 3)  # as often as resampling `read` alone (2/3)
    assert not trial.repaired
    assert side_reruns == []  # the draws redrew `read` alone


def test_an_upstream_repair_that_holds_across_the_draws_keeps_its_credit() -> None:
    # `read` is right on an even input (x=4, the oracle's) at every draw, on an odd one in 1 of 3.
    trial, _ = _settled(lambda x, i: x % 2 == 0 or (x + i) % 3 == 1)
    assert trial.rerolled == ["read"]
    assert (trial.repairs, trial.tries) == (3, 3)  # resampling `read` at x=3 repairs 1/3
    assert trial.repaired


def test_an_upstream_repair_where_the_step_alone_never_repairs_costs_no_draw() -> None:
    # `read` is right only on an even input: resampling it at x=3 repairs 0/3
    trial, _ = _settled(lambda x, i: x % 2 == 0 and (x + i) % 5 != 0)
    assert trial.rerolled == ["read"]
    assert trial.repaired and trial.tries == 1


def test_a_repair_that_re_rolled_no_sampling_step_is_left_as_it_was() -> None:
    # the same noisy `read`, but declared at temperature 0 (not sampling): nothing to measure
    trial, _ = _settled(lambda x, i: (x + i) % 3 != 0, sampling=frozenset())
    assert trial.rerolled == [] and trial.repaired and trial.tries == 1

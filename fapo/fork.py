"""Fork a LangGraph checkpoint at one step of a superstep while its sibling steps keep their run.

On a fan-out graph the checkpoint right before a step schedules that step and its siblings as one
superstep. LangGraph's `update_state(config, values, as_node=step)` closes the whole superstep
with that single update: the siblings never run and a join waiting on them never fires (planted
year-gap: the oracle at `year_second` repaired 0 of the failures it causes). Re-running the
checkpoint instead runs every sibling again, at whatever sample index is set. Both helpers here
keep the siblings' recorded writes, using LangGraph's own machinery:

- `alone`: a copy of the checkpoint (`as_node="__copy__"`) on which the siblings' recorded writes
  are stored as pending writes, so running the thread on from it re-runs the chosen steps only
  (what LangGraph does when one task of a superstep failed and the others had finished);
- `with_update`: `alone`, then the step's superstep is run by a copy of the graph in which the
  step's node returns the given values, and stops after it. The step *ran* and wrote `values`,
  so LangGraph finishes the superstep as after any run: the triggers the step consumed are
  consumed (an update written with `update_state(as_node=step)` does not consume a join's
  barrier, so a step behind a join `add_edge([a, b], step)` ran again and overwrote the values),
  edges and conditional routes out of the step are taken on the new values, reducers apply.

A step that fans out with `Send` has several tasks in one superstep, one per `Send`, all with the
step's name: the helpers treat them as one step. `alone` re-runs every instance (the step drawn
again: a proposal changes the node's prompt or parameters, which every instance runs with), and
`with_update` writes `values` once, as the update of all the instances together (the first
instance to run writes it, the others write nothing), so a reducer receives it once. An instance
cannot be addressed on its own: the `Send` list is computed from the state upstream, which an
intervention upstream may change.

A checkpoint whose superstep holds the step alone (every linear chain) is forked from the
checkpoint itself.
"""

from __future__ import annotations

import dataclasses
import json
import weakref
from collections.abc import Collection, Mapping
from contextvars import ContextVar
from copy import copy as shallow
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.types import StateSnapshot


def siblings(snap: StateSnapshot, steps: Collection[str]) -> list[Any]:
    """The tasks of `snap`'s superstep that are not one of `steps`."""
    return [t for t in snap.tasks if t.name not in steps]


class _Written:
    """The values a replaced step writes: once, whichever of its instances runs first (the
    others write nothing)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values: dict[str, Any] | None = values

    def take(self) -> dict[str, Any]:
        out, self.values = self.values, None
        return out if out is not None else {}


_WRITTEN: ContextVar[_Written | None] = ContextVar("fapo_fork_written", default=None)
#: app -> step -> the app compiled with that step's node replaced (compiled once per graph).
_WRITERS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _writer(app: Any, step: str) -> Any:
    """`app`'s graph, compiled on `app`'s checkpointer, with `step`'s node returning what
    `_WRITTEN` holds."""
    apps = _WRITERS.setdefault(app, {})
    if step not in apps:

        async def written(_: Any) -> dict[str, Any]:
            held = _WRITTEN.get()
            if held is None:
                raise RuntimeError(f"{step}: no values to write")
            return held.take()

        builder = shallow(app.builder)
        builder.nodes = dict(builder.nodes)
        builder.nodes[step] = dataclasses.replace(
            builder.nodes[step], runnable=RunnableLambda(written, name=step)
        )
        apps[step] = builder.compile(checkpointer=app.checkpointer, store=app.store)
    return apps[step]


async def with_update(
    app: Any, snap: StateSnapshot, step: str, values: dict[str, Any]
) -> dict[str, Any]:
    """The config to run on from (downstream, with `app`) after `snap`'s superstep in which
    `step` wrote `values` (all its `Send` instances together) and every sibling task wrote
    what it recorded on `snap`'s run. `app` must be a compiled `StateGraph` (its `builder`).
    The same caveat as `alone`: nothing else may run on the thread in between."""
    start = await alone(app, snap, {step})
    token = _WRITTEN.set(_Written(values))
    try:
        async for _ in _writer(app, step).astream(
            None, start, stream_mode="updates", interrupt_after=[step]
        ):
            pass
    finally:
        _WRITTEN.reset(token)
    conf = start["configurable"]
    return {
        "configurable": {
            "thread_id": conf["thread_id"],
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
        }
    }


async def alone(app: Any, snap: StateSnapshot, steps: Collection[str]) -> dict[str, Any]:
    """The config to run from so that, of `snap`'s superstep, only `steps` run again (siblings
    keep their recorded writes). Without siblings: `snap`'s own config (a plain re-run).

    With siblings the fork becomes the head of `snap`'s thread and the returned config names the
    thread without a checkpoint: LangGraph hands recorded writes back to their tasks only when
    it resumes the head, not when it re-runs an addressed checkpoint. The caller must not run
    anything else on that thread in between."""
    others = siblings(snap, steps)
    if not others:
        return dict(snap.config)
    saver = app.checkpointer
    recorded = await saver.aget_tuple(snap.config)
    writes: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in (recorded.pending_writes if recorded else None) or []:
        writes.setdefault(task_id, []).append((channel, value))
    copy = await app.aupdate_state(snap.config, None, as_node="__copy__")
    fresh = {(t.name, t.path): t.id for t in (await app.aget_state(copy)).tasks}
    for task in others:
        new_id = fresh.get((task.name, task.path))
        if new_id is not None and writes.get(task.id):
            await saver.aput_writes(copy, writes[task.id], new_id)
    conf = copy["configurable"]
    thread: dict[str, Any] = {
        "configurable": {
            "thread_id": conf["thread_id"],
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
        }
    }
    head = await saver.aget_tuple(thread)
    if head is None or head.config["configurable"]["checkpoint_id"] != conf["checkpoint_id"]:
        raise RuntimeError(f"fork of thread {conf['thread_id']} is not its head")
    return thread


def in_superstep_order(
    updates: list[tuple[str, Any]], before: Mapping[str, StateSnapshot]
) -> list[tuple[str, Any]]:
    """`updates` (node, update) as streamed, each run of consecutive sibling steps (steps the
    recorded run scheduled from one checkpoint, `before[step]`) sorted by name: siblings stream
    in the order they finish, which a live model varies from run to run, so two runs compared
    position by position would name a sibling that merely finished first as the first change.
    A chain without siblings comes back unchanged. The instances of one `Send` step (one name)
    stream in the order they finish too: they are sorted by their update's JSON."""

    def key(u: tuple[str, Any]) -> tuple[str, str]:
        return u[0], json.dumps(u[1], sort_keys=True, default=str)

    def group(node: str) -> Any:
        snap = before.get(node)
        return snap.config["configurable"].get("checkpoint_id") if snap is not None else None

    out: list[tuple[str, Any]] = []
    run: list[tuple[str, Any]] = []
    for item in updates:
        if run and (group(item[0]) is None or group(item[0]) != group(run[0][0])):
            out += sorted(run, key=key)
            run = []
        run.append(item)
    return out + sorted(run, key=key)

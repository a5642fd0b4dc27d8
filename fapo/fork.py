"""Fork a LangGraph checkpoint at one step of a superstep while its sibling steps keep their run.

On a fan-out graph the checkpoint right before a step schedules that step and its siblings as one
superstep. LangGraph's `update_state(config, values, as_node=step)` closes the whole superstep
with that single update: the siblings never run and a join waiting on them never fires (planted
year-gap: the oracle at `year_second` repaired 0 of the failures it causes). Re-running the
checkpoint instead runs every sibling again, at whatever sample index is set. Both helpers here
keep the siblings' recorded writes, using LangGraph's own machinery:

- `with_update`: one `StateUpdate` per task of the superstep (`abulk_update_state`), the step's
  with the given values, every sibling's with the update it recorded;
- `alone`: a copy of the checkpoint (`as_node="__copy__"`) on which the siblings' recorded writes
  are stored as pending writes, so running the thread on from it re-runs the chosen steps only
  (what LangGraph does when one task of a superstep failed and the others had finished).

A checkpoint whose superstep holds the step alone (every linear chain) is forked exactly as
before: `update_state(as_node=step)` and a re-run from the checkpoint itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from langgraph.types import StateSnapshot, StateUpdate


def siblings(snap: StateSnapshot, steps: Collection[str]) -> list[Any]:
    """The tasks of `snap`'s superstep that are not one of `steps`."""
    return [t for t in snap.tasks if t.name not in steps]


async def with_update(
    app: Any, snap: StateSnapshot, step: str, values: dict[str, Any]
) -> dict[str, Any]:
    """The checkpoint after `snap`'s superstep in which `step` wrote `values` and every sibling
    task wrote what it recorded on `snap`'s run; resume from it to run on downstream."""
    others = siblings(snap, {step})
    if not others:
        return dict(await app.aupdate_state(snap.config, values, as_node=step))
    updates = [StateUpdate(values, step)]
    # A sibling with no recorded result did not finish on the recorded run: nothing to replay.
    updates += [StateUpdate(t.result, t.name) for t in others if t.result is not None]
    return dict(await app.abulk_update_state(snap.config, [updates]))


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
    A chain without siblings comes back unchanged."""

    def group(node: str) -> Any:
        snap = before.get(node)
        return snap.config["configurable"].get("checkpoint_id") if snap is not None else None

    out: list[tuple[str, Any]] = []
    run: list[tuple[str, Any]] = []
    for item in updates:
        if run and (group(item[0]) is None or group(item[0]) != group(run[0][0])):
            out += sorted(run, key=lambda u: u[0])
            run = []
        run.append(item)
    return out + sorted(run, key=lambda u: u[0])

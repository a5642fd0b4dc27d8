"""Steps and model calls of one example evaluation, recorded by a LangChain callback handler.

The engine hands LangGraph a `RunnableConfig` (run name, tags, metadata, callbacks); LangGraph
runs every node as a child run of the graph's root run, and every call a node makes (chat model,
nested chain, tool) as a descendant of it. So a step is a direct child of the root, and a model
call belongs to the step its parent chain leads to: public run ids, no private LangGraph metadata.
A user's callbacks (or LangSmith, switched on by its environment variables) see the same runs.
"""

from __future__ import annotations

import json
import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult

from fapo.runtime import SAMPLE

#: `_llm_type` prefix of fapo's instrumented chat model (other models in a chain are not calls
#: the engine made, so they are not recorded).
_INSTRUMENTED = "fapo-instrumented:"


def jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else its JSON round trip with `str` for unknown objects."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    return [{"role": m.type, "content": m.content} for m in messages]


def call_output(step: dict[str, Any], call: dict[str, Any]) -> Any:
    """A call record's output; stored once, in the step's update, when the step kept it as is."""
    ref = call.get("output_in_update")
    if ref is not None and isinstance(step.get("update"), dict):
        return step["update"].get(ref)
    return call.get("output")


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class StepRecorder(BaseCallbackHandler):
    """Collects the steps (with their model calls) of one graph run.

    `run_inline`: called in the event loop like a plain function call, not sent to LangChain's
    thread pool (the default for a synchronous handler in async code, ~50 µs a callback)."""

    run_inline = True

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.root: UUID | None = None
        self.steps: list[dict[str, Any]] = []
        self.orphan_calls: list[dict[str, Any]] = []
        self._step_of: dict[UUID, dict[str, Any]] = {}  # live run id -> the step it belongs to
        self._nodes: dict[UUID, tuple[dict[str, Any], float]] = {}  # step runs -> (step, start)
        self._calls: dict[UUID, tuple[dict[str, Any] | None, dict[str, Any], float]] = {}

    # -- runs: the root, its direct children (steps), their descendants ---------------------
    def _descend(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        step = self._step_of.get(parent_run_id) if parent_run_id is not None else None
        if step is not None:
            self._step_of[run_id] = step

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is None:
            if self.root is None:
                self.root = run_id
            return
        if parent_run_id == self.root:
            now = time.perf_counter()
            step = {
                "step": kwargs.get("name") or "?",
                "start_s": now - self.t0,
                "duration_s": None,
                "update": None,
                "error": None,
                "calls": [],
            }
            self.steps.append(step)
            self._step_of[run_id] = step
            self._nodes[run_id] = (step, now)
            return
        self._descend(run_id, parent_run_id)

    def on_tool_start(
        self,
        serialized: Any,
        input_str: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kw: Any,
    ) -> None:
        self._descend(run_id, parent_run_id)

    def on_retriever_start(
        self,
        serialized: Any,
        query: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kw: Any,
    ) -> None:
        self._descend(run_id, parent_run_id)

    def _end(self, run_id: UUID, update: Any, error: BaseException | None) -> None:
        node = self._nodes.pop(run_id, None)
        self._step_of.pop(run_id, None)
        if node is None:
            return
        step, started = node
        step["duration_s"] = time.perf_counter() - started
        if error is not None:
            step["error"] = _error_text(error)
            return
        # Kept as the node returned it: results.jsonl is written with `default=str`, which turns
        # what JSON cannot hold into text exactly as a `jsonable` round trip here would, without
        # encoding every update twice (~3% of evaluation CPU at 0 ms model latency).
        step["update"] = update = update if update is not None else {}
        if isinstance(update, dict):  # a model answer the step kept unchanged is stored once
            for call in step["calls"]:
                out = call.get("output")
                if isinstance(out, str) and out:
                    key = next((k for k, v in update.items() if v is out or v == out), None)
                    if key is not None:
                        call["output"], call["output_in_update"] = None, key

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, outputs, None)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, None, error)

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._step_of.pop(run_id, None)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._step_of.pop(run_id, None)

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._step_of.pop(run_id, None)

    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._step_of.pop(run_id, None)

    # -- model calls ------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        params = invocation_params or {}
        if not str(params.get("_type", "")).startswith(_INSTRUMENTED):
            return
        settings = {k: v for k, v in params.items() if k not in ("spec", "_type", "stop")}
        base = {
            "node": None,
            "model": params.get("spec"),
            "settings": settings,
            "sample": SAMPLE.get(),
            "messages": _messages(messages[0]) if messages else [],
        }
        step = self._step_of.get(parent_run_id) if parent_run_id is not None else None
        if step is not None:
            base["node"] = step["step"]
        self._calls[run_id] = (step, base, time.perf_counter())

    def _record(self, run_id: UUID, fields: dict[str, Any]) -> None:
        entry = self._calls.pop(run_id, None)
        if entry is None:
            return
        step, base, started = entry
        call = {
            **base,
            "output": None,
            "finish_reason": None,
            "input_tokens": 0,
            "output_tokens": 0,
            "latency_s": round(time.perf_counter() - started, 6),
            "cost_usd": 0.0,
            "cache_hit": False,
            "error": None,
            "error_kind": None,
            "attempts": 0,
            "capped": False,
            **fields,
        }
        (step["calls"] if step is not None else self.orphan_calls).append(call)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        if run_id not in self._calls:
            return
        fapo = (response.llm_output or {}).get("fapo") or {}
        gens = response.generations[0] if response.generations else []
        self._record(
            run_id,
            {
                "output": gens[0].message.content if gens else None,  # type: ignore[attr-defined]
                "finish_reason": fapo.get("finish_reason"),
                "input_tokens": fapo.get("input_tokens", 0),
                "output_tokens": fapo.get("output_tokens", 0),
                "cost_usd": fapo.get("cost_usd", 0.0),
                "cache_hit": bool(fapo.get("cache_hit")),
                "attempts": fapo.get("attempts", 0),
                "capped": bool(fapo.get("capped")),
            },
        )

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        from fapo.call_errors import ModelCallError

        fields: dict[str, Any] = {"error": _error_text(error)}
        if isinstance(error, ModelCallError):
            fields.update(
                error_kind=error.kind.value,
                attempts=error.attempts,
                input_tokens=error.tokens[0],
                output_tokens=error.tokens[1],
                cost_usd=error.cost_usd,
            )
        self._record(run_id, fields)

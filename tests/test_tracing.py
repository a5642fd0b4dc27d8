"""Evaluation traces through LangChain's own plumbing: a labelled RunnableConfig per example and a
callback handler recording steps and calls (issue 11). Offline demo tenants, simulated model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler

from fapo.evaluate import evaluate
from fapo.llm import ModelFactory
from fapo.runtime import REPEAT
from fapo.tenant import load_tenant
from fapo.tracing import call_output, jsonable


class Collector(BaseCallbackHandler):
    """A user's handler: keeps the root runs and the chat-model starts it is shown."""

    def __init__(self) -> None:
        self.roots: list[dict[str, Any]] = []
        self.model_starts: list[dict[str, Any]] = []

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
        tags: list[str] | None = None, metadata: dict[str, Any] | None = None, **kw: Any,
    ) -> None:  # fmt: skip
        if parent_run_id is None:
            self.roots.append({"name": kw.get("name"), "tags": tags, "metadata": metadata})

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, metadata: dict | None = None,
        **kw: Any,
    ) -> None:  # fmt: skip
        self.model_starts.append(dict(metadata or {}))


def test_user_callback_sees_one_labelled_root_run_per_example(project, tmp_path: Path) -> None:
    tenant = load_tenant(project.tenants_dir / "demo-qa", project)
    user = Collector()
    summary = evaluate(
        tenant,
        "val",
        limit=6,
        repeats=2,
        use_cache=False,
        concurrency=3,
        callbacks=[user],
        variant="v007",
        out_dir=tmp_path / "eval",
    )
    records = [
        json.loads(x) for x in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()
    ]
    ids = [ex.id for ex in tenant.examples("val")][:6]
    assert summary.n == 6 and len(records) == 12
    assert len(user.roots) == 12  # one root run per example and repeat, nothing else
    seen = sorted((r["metadata"]["example_id"], r["metadata"]["repeat"]) for r in user.roots)
    assert seen == sorted((i, rep) for i in ids for rep in (0, 1))
    for root in user.roots:
        assert root["name"] == "fapo:demo-qa"
        assert {"tenant:demo-qa", "variant:v007", "split:val"} <= set(root["tags"])
        assert root["metadata"]["variant"] == "v007" and root["metadata"]["split"] == "val"
    # the model calls inside carry the example's labels too (LangSmith shows them per call)
    calls = sum(len(s["calls"]) for r in records for s in r["steps"])
    assert len(user.model_starts) == calls > 0
    assert {m["example_id"] for m in user.model_starts} == set(ids)


def _reference_steps(tenant: Any, ex: Any, repeat: int) -> list[dict[str, Any]]:
    """What evaluation recorded before issue 11: steps from LangGraph's `tasks` stream, calls
    grouped by the `langgraph_node` of the run that made them (outputs only)."""
    outputs: dict[str, list[Any]] = {}

    class Calls(BaseCallbackHandler):
        run_inline = True

        def __init__(self) -> None:
            self.node: dict[UUID, str] = {}

        def on_chat_model_start(
            self, serialized: Any, messages: Any, *, run_id: UUID,
            metadata: dict | None = None, invocation_params: dict | None = None, **kw: Any,
        ) -> None:  # fmt: skip
            if str((invocation_params or {}).get("_type", "")).startswith("fapo-instrumented"):
                self.node[run_id] = (metadata or {}).get("langgraph_node")

        def on_llm_end(self, response: Any, *, run_id: UUID, **kw: Any) -> None:
            if run_id in self.node:
                msg = response.generations[0][0].message
                outputs.setdefault(self.node.pop(run_id), []).append(msg.content)

    graph, _ = tenant.build(ModelFactory(dict(tenant.spec.models), tenant.settings, None, None))
    app = graph.compile()
    steps: list[dict[str, Any]] = []
    open_tasks: dict[str, int] = {}

    async def run() -> None:
        REPEAT.set(repeat)
        async for mode, ev in app.astream(
            dict(ex.inputs), {"callbacks": [Calls()]}, stream_mode=["tasks", "values"]
        ):
            if mode != "tasks":
                continue
            if "input" in ev:
                open_tasks[ev["id"]] = len(steps)
                steps.append({"step": ev["name"], "update": None, "error": None})
            else:
                i = open_tasks.pop(ev["id"])
                steps[i]["update"] = jsonable(ev.get("result"))
                if ev.get("error") is not None:
                    steps[i]["error"] = f"{type(ev['error']).__name__}: {ev['error']}"

    asyncio.run(run())
    for s in steps:
        s["outputs"] = sorted(map(str, outputs.pop(s["step"], [])))
    return steps


@pytest.mark.parametrize(
    ("name", "structure"), [("demo-qa", False), ("demo-qa", True), ("demo-instructions", False)]
)
def test_step_records_match_the_langgraph_task_stream(
    project, tmp_path: Path, name: str, structure: bool
) -> None:
    tenant = load_tenant(project.tenants_dir / name, project)
    if structure:  # the documented structure fix inserts a retrieval hop (more nodes, calls)
        fixes = tenant.root / "fixes"
        tenant = tenant.variant(
            {
                "structure.yaml": (fixes / "structure.yaml").read_text(),
                "prompts/hop_query.md": (fixes / "prompts" / "hop_query.md").read_text(),
            }
        )
    evaluate(tenant, "val", limit=8, use_cache=False, out_dir=tmp_path / "eval", repeats=1)
    records = [
        json.loads(x) for x in (tmp_path / "eval" / "results.jsonl").read_text().splitlines()
    ]
    examples = {ex.id: ex for ex in tenant.examples("val")}
    assert len(records) == 8
    n_calls = 0
    for rec in records:
        want = _reference_steps(tenant, examples[rec["id"]], rec["repeat"])
        got = [
            {
                "step": s["step"],
                "update": s["update"],
                "error": s["error"],
                "outputs": sorted(str(call_output(s, c)) for c in s["calls"]),
            }
            for s in rec["steps"]
        ]
        assert got == want, rec["id"]
        for s in rec["steps"]:
            assert s["duration_s"] is not None and s["duration_s"] >= 0 and s["start_s"] >= 0
            for c in s["calls"]:
                n_calls += 1
                assert c["node"] == s["step"] and c["messages"] and not c["cache_hit"]
                assert c["attempts"] == 1 and c["error"] is None
    assert n_calls >= 8


def test_langsmith_from_its_environment_receives_the_labelled_runs(
    project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LangSmith's tracer, switched on by its own variables, posts the same labelled runs (to a
    loopback stand-in for its API that answers /info and keeps /runs/batch bodies)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posted: list[dict[str, Any]] = []
    info = {
        "version": "0.10.0",
        "batch_ingest_config": {
            "use_multipart_endpoint": False,
            "size_limit": 100,
            "size_limit_bytes": 20_971_520,
            "scale_up_qsize_trigger": 1000,
            "scale_up_nthreads_limit": 16,
            "scale_down_nempty_trigger": 4,
        },
    }

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _ok(self, data: bytes = b"{}") -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._ok(json.dumps(info).encode())

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/runs/batch"):
                posted.extend(json.loads(body).get("post") or [])
            self._ok()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    for name in ("LANGCHAIN_TRACING_V2", "LANGCHAIN_ENDPOINT", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("LANGSMITH_API_KEY", "test-key")
    from langsmith import run_trees
    from langsmith import utils as ls_utils

    # langsmith caches its environment and client per process: start from this test's
    monkeypatch.setattr(run_trees, "_CLIENT", None)
    ls_utils.get_env_var.cache_clear()
    try:
        from langchain_core.tracers.langchain import wait_for_all_tracers

        tenant = load_tenant(project.tenants_dir / "demo-qa", project)
        evaluate(tenant, "val", limit=3, use_cache=False, variant="v009")
        wait_for_all_tracers()
    finally:
        server.shutdown()
        server.server_close()
        ls_utils.get_env_var.cache_clear()  # monkeypatch restores the variables after this
    roots = [r for r in posted if not r.get("parent_run_id")]
    ids = [ex.id for ex in tenant.examples("val")][:3]
    assert sorted(r["extra"]["metadata"]["example_id"] for r in roots) == sorted(ids)
    for r in roots:
        assert r["name"] == "fapo:demo-qa" and "variant:v009" in r["tags"]
        assert r["extra"]["metadata"]["split"] == "val"
    assert any(r["run_type"] == "llm" for r in posted)  # the model calls are traced too

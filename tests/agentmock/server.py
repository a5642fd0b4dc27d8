"""Scripted loopback model servers: Anthropic Messages (SSE) and OpenAI Responses (SSE).

Both bind 127.0.0.1 on an ephemeral port, answer from a `Script`, and record every request so
tests can assert what the CLI sent (auth header, routed rule, tool results).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .script import Dynamic, Error, Hang, Script, Step, Text, Tool


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    rule: str | None = None
    step: str = ""


@dataclass
class _State:
    script: Script
    requests: list[Seen] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _texts(obj: Any) -> list[str]:
    """Every string inside a JSON value (to route by marker wherever the CLI put the prompt)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _texts(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _texts(v)]
    return []


def _prompt_text(body: dict[str, Any], protocol: str) -> str:
    """System prompt plus user-authored text, excluding tool results (file contents may echo
    markers). Anthropic: `system` + user text blocks; Responses: `instructions` + input messages."""
    parts: list[str] = []
    if protocol == "anthropic":
        parts += _texts(body.get("system", ""))
        for msg in body.get("messages", []):
            content = msg.get("content")
            if isinstance(content, str):
                parts.append(content)
                continue
            for block in content or []:
                if block.get("type") == "text":
                    parts.append(block.get("text", ""))
    else:
        parts += _texts(body.get("instructions", ""))
        for item in body.get("input", []) if isinstance(body.get("input"), list) else []:
            if item.get("type") in (None, "message"):
                parts += _texts(item.get("content", ""))
        if isinstance(body.get("input"), str):
            parts.append(body["input"])
    return "\n".join(parts)


def tool_results_text(body: dict[str, Any], protocol: str) -> str:
    """The text of every tool result a request carries (what the CLI read or ran)."""
    if protocol == "anthropic":
        return "\n".join(
            s
            for msg in body.get("messages", [])
            if isinstance(msg.get("content"), list)
            for block in msg["content"]
            if block.get("type") == "tool_result"
            for s in _texts(block.get("content", ""))
        )
    return "\n".join(
        s
        for it in body.get("input", [])
        if str(it.get("type", "")).endswith("_output")
        for s in _texts(it.get("output", ""))
    )


def _tool_results(body: dict[str, Any], protocol: str) -> int:
    if protocol == "anthropic":
        return sum(
            1
            for msg in body.get("messages", [])
            if isinstance(msg.get("content"), list)
            for block in msg["content"]
            if block.get("type") == "tool_result"
        )
    items = body.get("input", [])
    return sum(1 for it in items if str(it.get("type", "")).endswith("_output"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "agentmock/1"
    state: _State
    protocol: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record(None)
        self._json(200, {"data": [], "object": "list"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {}
        seen = self._record(body)
        path = self.path.split("?")[0]
        if path.endswith("/count_tokens"):
            self._json(200, {"input_tokens": 10})
            return
        if not path.endswith(("/messages", "/responses")):
            self._json(404, {"error": {"message": f"no route {path}"}})
            return
        text = _prompt_text(body, self.protocol)
        if self.state.script.route_on_tool_results:
            text = "\n".join(_texts(body))  # e.g. route by what BRIEF.md said
        rule, step = self.state.script.pick(text, _tool_results(body, self.protocol))
        if isinstance(step, Dynamic):
            step = step.make(tool_results_text(body, self.protocol))
        seen.rule, seen.step = rule, type(step).__name__
        self._answer(step, body)

    # -- helpers -------------------------------------------------------------------------------

    def _record(self, body: dict[str, Any] | None) -> Seen:
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        with self.state.lock:
            self.state.requests.append(seen)
        return seen

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, step: Step, body: dict[str, Any]) -> None:
        if isinstance(step, Hang):
            deadline = time.monotonic() + step.seconds
            while time.monotonic() < deadline and not self.state.stopping.is_set():
                time.sleep(0.05)
            self.close_connection = True
            return
        if isinstance(step, Error):
            if self.protocol == "anthropic":
                err = {"type": "error", "error": {"type": "api_error", "message": step.message}}
            else:
                err = {"error": {"type": "server_error", "message": step.message}}
            self._json(step.status, err)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        events = (
            _anthropic_events(step, body)
            if self.protocol == "anthropic"
            else _responses_events(step)
        )
        for name, data in events:
            chunk = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
            self.wfile.write(chunk.encode())
        self.wfile.flush()


def _anthropic_events(step: Text | Tool, body: dict[str, Any]) -> list[tuple[str, dict]]:
    usage = {"input_tokens": 100, "output_tokens": 0}
    msg = {
        "id": "msg_" + uuid.uuid4().hex[:16],
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "mock"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    ev: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": msg})]
    if isinstance(step, Tool):
        block = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:16], "name": step.name}
        ev.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {**block, "input": {}},
                },
            )
        )
        delta = {"type": "input_json_delta", "partial_json": json.dumps(step.input)}
        stop = "tool_use"
    else:
        ev.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        delta = {"type": "text_delta", "text": step.text}
        stop = "end_turn"
    ev.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    ev.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    ev.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        )
    )
    ev.append(("message_stop", {"type": "message_stop"}))
    return ev


def _responses_events(step: Text | Tool) -> list[tuple[str, dict]]:
    rid = "resp_" + uuid.uuid4().hex[:16]
    if isinstance(step, Tool) and step.name == "apply_patch":
        item = {
            "type": "custom_tool_call",
            "id": "ctc_" + uuid.uuid4().hex[:12],
            "call_id": "call_" + uuid.uuid4().hex[:12],
            "name": "apply_patch",
            "input": step.input if isinstance(step.input, str) else json.dumps(step.input),
            "status": "completed",
        }
    elif isinstance(step, Tool):
        item = {
            "type": "function_call",
            "id": "fc_" + uuid.uuid4().hex[:12],
            "call_id": "call_" + uuid.uuid4().hex[:12],
            "name": step.name,
            "arguments": json.dumps(step.input),
            "status": "completed",
        }
    else:
        item = {
            "type": "message",
            "id": "msg_" + uuid.uuid4().hex[:12],
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": step.text, "annotations": []}],
        }
    usage = {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 120,
    }
    return [
        ("", {"type": "response.created", "response": {"id": rid}}),
        ("", {"type": "response.output_item.done", "output_index": 0, "item": item}),
        ("", {"type": "response.completed", "response": {"id": rid, "usage": usage}}),
    ]


class MockModelServer:
    """`with MockModelServer("anthropic", script) as srv: srv.url` — a scripted model on loopback."""

    def __init__(self, protocol: str, script: Script) -> None:
        if protocol not in ("anthropic", "responses"):
            raise ValueError(protocol)
        self.state = _State(script)
        handler = type("Handler", (_Handler,), {"state": self.state, "protocol": protocol})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.requests)

    def model_requests(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "POST" and r.body is not None]

    def __enter__(self) -> MockModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

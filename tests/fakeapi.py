"""Loopback HTTP server speaking the Anthropic Messages and OpenAI Chat Completions APIs.

Tests drive the real SDK clients (through LangChain) against it, so retries, timeouts, usage
parsing and streaming are exercised exactly as in production, with faults injected on demand:
a scripted sequence for the next requests (`script`) or a persistent rule keyed on the prompt
text (`fail_when`). Every request attempt is recorded, retries included.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Dialect = Literal["anthropic", "openai"]


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) a normal answer.

    `status` > 0 answers with that HTTP error; `delay_s` > 0 waits first (longer than the
    client's timeout makes it a timeout). `retry_after_ms` is sent with errors so the SDKs
    retry without their default backoff (they ignore a zero value, hence 1 ms).
    """

    status: int = 0
    delay_s: float = 0.0
    retry_after_ms: int | None = 1


@dataclass(frozen=True)
class Reply:
    text: str = "ok"
    finish: Literal["stop", "length"] = "stop"
    input_tokens: int = 11
    output_tokens: int = 7


@dataclass
class Request:
    """One HTTP attempt as the server saw it."""

    dialect: Dialect
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def prompt(self) -> str:
        """All text the client sent (system and messages), for matching rules."""
        parts: list[str] = []
        system = self.body.get("system")
        parts.extend(_texts(system))
        for msg in self.body.get("messages", []):
            parts.extend(_texts(msg.get("content")))
        return "\n".join(parts)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


def _texts(content: Any) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                yield block["text"]


ReplyFn = Callable[[Request], "Reply | str"]


class FakeAPI:
    """A threaded server on 127.0.0.1 and an ephemeral port; use as a context manager."""

    def __init__(self, reply: ReplyFn | None = None) -> None:
        self.reply_fn: ReplyFn = reply or (lambda _req: Reply())
        self.requests: list[Request] = []
        self._script: deque[Fault] = deque()
        self._rules: list[tuple[str, Fault]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # release handlers sleeping in a delay fault
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Root URL (the Anthropic SDK's base_url); OpenAI clients want `openai_base`."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    # -- faults ------------------------------------------------------------------------------

    def script(self, *faults: Fault) -> None:
        """Apply these faults, in order, to the next requests (one each); then answer normally."""
        with self._lock:
            self._script.extend(faults)

    def fail_when(self, substring: str, fault: Fault) -> None:
        """Apply `fault` to every request whose prompt contains `substring`."""
        with self._lock:
            self._rules.append((substring, fault))

    def count(self, substring: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if substring in r.prompt)

    # -- request handling (called from handler threads) --------------------------------------

    def record(self, req: Request) -> Fault | None:
        with self._lock:
            self.requests.append(req)
            for substring, fault in self._rules:
                if substring in req.prompt:
                    return fault
            return self._script.popleft() if self._script else None

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)


def _make_handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            self._json(404, {"error": {"message": "not found", "type": "not_found"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            if path.endswith("/messages"):
                dialect: Dialect = "anthropic"
            elif path.endswith("/chat/completions"):
                dialect = "openai"
            else:
                self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                return
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "bad json", "type": "invalid_request"}})
                return
            req = Request(dialect, path, {k.lower(): v for k, v in self.headers.items()}, body)
            fault = api.record(req)
            if fault and fault.delay_s > 0:
                api.wait(fault.delay_s)
            if fault and fault.status:
                self._error(dialect, fault)
                return
            out = api.reply_fn(req)
            reply = out if isinstance(out, Reply) else Reply(text=str(out))
            model = str(body.get("model", "fake"))
            try:
                if req.stream:
                    self._stream(dialect, model, reply, body)
                else:
                    self._json(200, _complete(dialect, model, reply))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to answer

        def _error(self, dialect: Dialect, fault: Fault) -> None:
            kind = "rate_limit_error" if fault.status == 429 else "api_error"
            msg = f"injected fault {fault.status}"
            body: dict[str, Any]
            if dialect == "anthropic":
                body = {"type": "error", "error": {"type": kind, "message": msg}}
            else:
                body = {"error": {"message": msg, "type": kind, "code": None, "param": None}}
            headers = {}
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = str(fault.retry_after_ms)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._json(fault.status, body, headers)

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, dialect: Dialect, model: str, reply: Reply, body: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            events = (
                _anthropic_events(model, reply)
                if dialect == "anthropic"
                else _openai_events(model, reply, body)
            )
            for event, data in events:
                chunk = f"event: {event}\n" if event else ""
                chunk += f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
                self.wfile.write(chunk.encode())
                self.wfile.flush()

    return Handler


def _anthropic_stop(reply: Reply) -> str:
    return "end_turn" if reply.finish == "stop" else "max_tokens"


def _complete(dialect: Dialect, model: str, reply: Reply) -> dict[str, Any]:
    if dialect == "anthropic":
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": _anthropic_stop(reply),
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


def _halves(text: str) -> list[str]:
    mid = len(text) // 2
    return [p for p in (text[:mid], text[mid:]) if p]


def _anthropic_events(model: str, reply: Reply) -> Iterator[tuple[str, Any]]:
    yield (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
            },
        },
    )
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for part in _halves(reply.text):
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": part},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _anthropic_stop(reply), "stop_sequence": None},
            # the live API repeats the input tokens here (cumulative usage)
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _openai_events(model: str, reply: Reply, body: dict) -> Iterator[tuple[str, Any]]:
    def chunk(delta: dict, finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield "", chunk({"role": "assistant", "content": ""}, None)
    for part in _halves(reply.text):
        yield "", chunk({"content": part}, None)
    yield "", chunk({}, reply.finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        yield (
            "",
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": usage,
            },
        )
    yield "", "[DONE]"

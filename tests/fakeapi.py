"""Loopback HTTP server speaking the Anthropic Messages and OpenAI Chat Completions APIs.

Tests drive the real SDK clients (through LangChain) against it, so retries, timeouts, usage
parsing and streaming are exercised exactly as in production, with faults injected on demand:
a scripted sequence for the next requests (`script`), a persistent rule keyed on the prompt
text (`fail_when`), or a seeded random plan over the fault kinds (`inject`). Every request
attempt is recorded with its arrival time and the fault it got, retries included.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Dialect = Literal["anthropic", "openai"]


class Kind(StrEnum):
    """Fault kinds beyond a plain HTTP status (see `Fault.kind`)."""

    RESET = "connection_reset"  # the socket is closed (RST) without an answer
    MALFORMED = "malformed_json"  # 200, Content-Type JSON, body that does not parse
    WRONG_TYPE = "wrong_content_type"  # 200 with an HTML page
    EMPTY = "empty_choices"  # OpenAI: `choices: []`; Anthropic: `content: []`
    CONTENT_FILTER = "content_filter"  # OpenAI finish_reason content_filter, no content
    REFUSAL = "refusal"  # Anthropic stop_reason refusal; OpenAI `message.refusal`
    TRUNCATED = "truncated"  # stream cut mid-way / body shorter than its Content-Length
    HUGE = "huge_output"  # a 2 MB answer
    NO_USAGE = "no_usage"  # an answer without token usage
    HANG = "hang"  # the answer comes after `delay_s`, longer than the client waits


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) a normal answer.

    `status` > 0 answers with that HTTP error; `delay_s` > 0 waits first (longer than the
    client's timeout makes it a timeout, shorter a slow answer). `kind` is one of `Kind`.
    `retry_after_ms` / `retry_after_s` are sent with errors as `retry-after-ms` / `retry-after`.
    """

    status: int = 0
    delay_s: float = 0.0
    retry_after_ms: int | None = 1
    kind: Kind | None = None
    retry_after_s: float | None = None

    @property
    def fails(self) -> bool:
        """Whether the client gets no usable answer (slow, huge and usage-less ones are answers)."""
        return bool(self.status) or self.kind not in (None, Kind.HUGE, Kind.NO_USAGE)


#: The fault catalogue of the seeded injector, by name (timeout needs the client's timeout).
def catalogue(timeout_s: float) -> dict[str, Fault]:
    return {
        "http_500": Fault(status=500),
        "http_502": Fault(status=502),
        "http_503": Fault(status=503),
        "http_529_overloaded": Fault(status=529),
        "http_429_retry_after": Fault(status=429, retry_after_ms=None, retry_after_s=0.05),
        "http_401": Fault(status=401),
        "http_403": Fault(status=403),
        "http_400": Fault(status=400),
        "connection_reset": Fault(kind=Kind.RESET),
        "timeout_hang": Fault(delay_s=timeout_s * 4, kind=Kind.HANG),
        "slow": Fault(delay_s=timeout_s / 4),
        "malformed_json": Fault(kind=Kind.MALFORMED),
        "wrong_content_type": Fault(kind=Kind.WRONG_TYPE),
        "empty_choices": Fault(kind=Kind.EMPTY),
        "content_filter": Fault(kind=Kind.CONTENT_FILTER),
        "refusal": Fault(kind=Kind.REFUSAL),
        "truncated_body": Fault(kind=Kind.TRUNCATED),
        "huge_output": Fault(kind=Kind.HUGE),
        "no_usage": Fault(kind=Kind.NO_USAGE),
    }


HUGE_TEXT = "x" * 2_000_000


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
    fault: Fault | None = None

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


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: with 8+ concurrent clients on a loaded
    # machine, SYNs were dropped and a client's 0.4 s timeout expired before its request
    # reached the server (a metered attempt the server never saw, 1 in ~50 under load 13).
    request_queue_size = 128


class FakeAPI:
    """A threaded server on 127.0.0.1 and an ephemeral port; use as a context manager."""

    def __init__(self, reply: ReplyFn | None = None) -> None:
        self.reply_fn: ReplyFn = reply or (lambda _req: Reply())
        self.requests: list[Request] = []
        self._script: deque[Fault] = deque()
        self._rules: list[tuple[str, Fault]] = []
        self._plan: tuple[random.Random, float, list[Fault]] | None = None
        self.down = False  # every request fails with a 503 (an outage) while set
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
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

    def inject(self, seed: int, rate: float, faults: list[Fault]) -> None:
        """From now on each request (in arrival order) draws a fault from `faults` with
        probability `rate`, from a generator seeded with `seed` (scripted faults and rules win)."""
        with self._lock:
            self._plan = (random.Random(seed), rate, list(faults))

    def quiesce(self, quiet_s: float = 0.3, limit_s: float = 3.0) -> int:
        """Wait until no request has arrived for `quiet_s` (a loaded machine may accept a
        connection the client already gave up on late), then return the request count."""
        end = time.monotonic() + limit_s
        seen = -1
        while time.monotonic() < end:
            with self._lock:
                n = len(self.requests)
            if n == seen:
                break
            seen = n
            time.sleep(quiet_s)
        return seen

    def failed(self) -> int:
        """Requests that got no usable answer."""
        with self._lock:
            return sum(1 for r in self.requests if r.fault is not None and r.fault.fails)

    def count(self, substring: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if substring in r.prompt)

    # -- request handling (called from handler threads) --------------------------------------

    def record(self, req: Request) -> Fault | None:
        with self._lock:
            self.requests.append(req)
            req.fault = self._choose(req)
            return req.fault

    def _choose(self, req: Request) -> Fault | None:
        if self.down:
            return Fault(status=503)
        for substring, fault in self._rules:
            if substring in req.prompt:
                return fault
        if self._script:
            return self._script.popleft()
        if self._plan is not None:
            rng, rate, faults = self._plan
            if rng.random() < rate:
                return rng.choice(faults)
        return None

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
            if fault and fault.kind is Kind.RESET:
                self._reset()
                return
            out = api.reply_fn(req)
            reply = out if isinstance(out, Reply) else Reply(text=str(out))
            if fault and fault.kind is Kind.HUGE:
                reply = Reply(HUGE_TEXT, input_tokens=reply.input_tokens, output_tokens=500_000)
            model = str(body.get("model", "fake"))
            try:
                if fault and fault.kind not in (None, Kind.HUGE, Kind.HANG):
                    self._faulty(dialect, model, reply, fault.kind, req.stream, body)
                elif req.stream:
                    self._stream(dialect, model, reply, body)
                else:
                    self._json(200, _complete(dialect, model, reply))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): nothing to answer

        def _reset(self) -> None:
            """Close with RST (SO_LINGER 0): the client sees 'connection reset by peer'."""
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.close()

        def _faulty(
            self, dialect: Dialect, model: str, reply: Reply, kind: Kind, stream: bool, body: dict
        ) -> None:
            if kind is Kind.MALFORMED:
                self._raw(200, "application/json", b'{"id": "chatcmpl-fake", "choices": [{"ind')
            elif kind is Kind.WRONG_TYPE:
                self._raw(200, "text/html", b"<html><body>502 Bad Gateway</body></html>")
            elif kind is Kind.TRUNCATED:
                if stream:  # half the events, then the connection closes mid-answer
                    self._stream(dialect, model, reply, body, cut=True)
                    return
                data = json.dumps(_complete(dialect, model, reply)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self._reset()
            else:
                self._json(200, _odd_answer(dialect, model, reply, kind))

        def _raw(self, status: int, ctype: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

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
            if fault.retry_after_s is not None:
                headers["retry-after"] = f"{fault.retry_after_s:g}"
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

        def _stream(
            self, dialect: Dialect, model: str, reply: Reply, body: dict, cut: bool = False
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            events = list(
                _anthropic_events(model, reply)
                if dialect == "anthropic"
                else _openai_events(model, reply, body)
            )
            if cut:
                events = events[: len(events) // 2]
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


def _odd_answer(dialect: Dialect, model: str, reply: Reply, kind: Kind) -> dict[str, Any]:
    """A 200 answer that carries no usable text (or, for NO_USAGE, no token counts)."""
    out = _complete(dialect, model, reply)
    if kind is Kind.NO_USAGE:
        out.pop("usage")
        if dialect == "anthropic":  # the SDK requires the field; zeros mean "not reported"
            out["usage"] = {"input_tokens": 0, "output_tokens": 0}
    elif dialect == "anthropic":
        if kind is Kind.EMPTY:
            out["content"] = []
        elif kind in (Kind.REFUSAL, Kind.CONTENT_FILTER):
            out["content"] = []
            out["stop_reason"] = "refusal"
    elif kind is Kind.EMPTY:
        out["choices"] = []
    else:
        choice = out["choices"][0]
        choice["message"]["content"] = None
        if kind is Kind.CONTENT_FILTER:
            choice["finish_reason"] = "content_filter"
        else:
            choice["message"]["refusal"] = "I can't help with that."
    return out


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

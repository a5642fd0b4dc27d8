"""The sandboxed evaluation worker's process (`python -m fapo.worker_main TENANT_COPY`): builds the
candidate's chain and runs examples it is sent, proxying every model call to the parent.

It runs inside bubblewrap (fapo/worker.py starts it): no network, no keys, only the variant's files
and the tenant's non-sealed resources. The protocol channel is the original stdin/stdout, moved to
private descriptors first, so the chain's own `print` goes to stderr and cannot corrupt it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import BaseMessage, messages_from_dict, messages_to_dict
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, ValidationError

from fapo.call_errors import ModelCallError
from fapo.errors import FapoError
from fapo.evaluate import _Labels, trace_example
from fapo.records import Example, Record
from fapo.runtime import REPEAT, SAMPLE
from fapo.tracing import jsonable
from fapo.worker_protocol import (
    TO_WORKER,
    BuildFailed,
    CallReply,
    Done,
    ModelCall,
    Ready,
    RunExample,
    Setup,
    encode,
    failed_example,
)


class Aborted(BaseException):
    """The parent stopped the evaluation (budget, outage): end the example without a reply.
    A BaseException so a chain's `except Exception` cannot swallow it."""


class Channel:
    """The worker's end of the protocol: thread-safe writes, replies matched to calls."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.pending: dict[int, concurrent.futures.Future[CallReply]] = {}

    def send(self, msg: Record) -> None:
        with self._lock:
            self.out.write(encode(msg))
            self.out.flush()

    def call(self, msg: dict[str, Any]) -> concurrent.futures.Future[CallReply]:
        fut: concurrent.futures.Future[CallReply] = concurrent.futures.Future()
        with self._lock:
            cid = next(self._ids)
            self.pending[cid] = fut
        self.send(ModelCall(call=cid, **msg))
        return fut


class ProxyChatModel(BaseChatModel):
    """What `ctx.llm()` gives a chain in the worker: each call is performed by the parent.

    Reports itself like fapo.llm.InstrumentedChatModel (`_llm_type` prefix, spec and settings
    as identifying parameters), so the worker's StepRecorder records its calls the same way."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    channel: Any
    role: str
    spec: str
    call_settings: dict[str, Any]

    @property
    def _llm_type(self) -> str:
        return "fapo-instrumented:sandboxed"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"spec": self.spec, **self.call_settings}

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> concurrent.futures.Future[CallReply]:
        return self.channel.call(
            {
                "role": self.role,
                "settings": self.call_settings,
                "messages": messages_to_dict(messages),
                "stop": stop,
                "kwargs": kwargs,
                "repeat": REPEAT.get(),
                "sample": SAMPLE.get(),
            }
        )

    @staticmethod
    def _result(reply: CallReply) -> ChatResult:
        if reply.abort is not None:
            raise Aborted(reply.abort)
        if reply.failure is not None:
            f = reply.failure
            err = ModelCallError(
                f.error_kind,
                "",
                attempts=f.attempts,
                tokens=(f.input_tokens, f.output_tokens),
                cost_usd=f.cost_usd,
            )
            err.args = (f.text,)  # the parent's message, word for word
            raise err
        if reply.message is None:
            raise FapoError("the parent answered a model call with neither message nor failure")
        (msg,) = messages_from_dict([reply.message])
        gen = ChatGeneration(message=msg, generation_info=reply.generation_info)
        return ChatResult(generations=[gen], llm_output=reply.llm_output)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(await asyncio.wrap_future(self._request(messages, stop, kwargs)))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(self._request(messages, stop, kwargs).result())


def _factory(channel: Channel, models: dict[str, str]) -> Any:
    """`ctx.llm(role, **settings)` in the worker: the same role and setting checks as
    fapo.llm.ModelFactory at build time; settings must be JSON (they cross to the parent)."""
    from fapo.models import _check_settings, parse_spec

    def factory(role: str = "task", **settings: Any) -> ProxyChatModel:
        if role not in models:
            raise FapoError(
                f"chain.py asks for model role '{role}' but tenant.yaml 'models' "
                f"has only {', '.join(models)}; add it there"
            )
        spec = parse_spec(models[role])
        if spec.provider not in ("sim", "local"):
            _check_settings(spec, {k: v for k, v in settings.items() if v is not None})
        try:
            json.dumps(settings)
        except (TypeError, ValueError):
            raise FapoError(f"ctx.llm('{role}'): settings must be plain values") from None
        return ProxyChatModel(
            channel=channel, role=role, spec=models[role], call_settings=dict(settings)
        )

    return factory


def _build(root: Path, setup: Setup, channel: Channel) -> Any:
    from fapo.settings import Defaults, Settings
    from fapo.tenant import Tenant, _read_mutable, read_tenant_spec

    spec = read_tenant_spec(root / "tenant.yaml").model_copy(update={"models": setup.models})
    defaults = Defaults(build_timeout_s=setup.build_timeout_s)
    settings = Settings(root=root, defaults=defaults)
    tenant = Tenant(root=root, spec=spec, settings=settings, files=_read_mutable(root))
    graph, _ = tenant.build(_factory(channel, setup.models))
    return graph.compile()


async def _job(app: Any, setup: Setup, run: RunExample, channel: Channel) -> None:
    labels = _Labels(setup.tenant, setup.variant, setup.split, setup.concurrency, ())
    ex = Example(id=run.example_id, inputs=run.inputs)
    t0 = time.perf_counter()
    try:
        traced = await asyncio.wait_for(
            trace_example(app, ex, run.repeat, labels, setup.prediction, t0),
            setup.example_timeout_s,
        )
    except TimeoutError:
        done = failed_example(
            run.job,
            "TimeoutError",
            f"example {ex.id} did not finish within {setup.example_timeout_s:g} s in the "
            "sandboxed worker",
            timed_out=True,
        )
    except Aborted:
        return
    except Exception as exc:  # e.g. BudgetExhausted raised by the chain itself
        done = failed_example(run.job, type(exc).__name__, str(exc))
    else:
        # the updates as results.jsonl holds them (`default=str`), then checked by the model
        steps = json.loads(json.dumps(traced.steps, default=str))
        done = Done.model_validate(
            {"job": run.job, "steps": steps, "prediction": jsonable(traced.prediction),
             "error": traced.error}
        )  # fmt: skip
    channel.send(done)


def _reader(inp: BinaryIO, channel: Channel, loop: asyncio.AbstractEventLoop, app: Any,
            setup: Setup) -> None:  # fmt: skip
    """Read the parent's messages until EOF; anything malformed ends the worker."""
    for line in inp:
        try:
            msg = TO_WORKER.validate_json(line)
        except ValidationError:
            break
        if isinstance(msg, RunExample):
            asyncio.run_coroutine_threadsafe(_job(app, setup, msg, channel), loop)
        elif isinstance(msg, CallReply):
            fut = channel.pending.pop(msg.call, None)
            if fut is None:
                break
            fut.set_result(msg)
        else:
            break
    loop.call_soon_threadsafe(loop.stop)


def main(root: Path) -> int:
    # The protocol keeps the original stdin/stdout on private descriptors; the chain's prints
    # go to stderr and its reads of stdin find nothing.
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    channel = Channel(out)
    try:
        setup = TO_WORKER.validate_json(inp.readline())
    except ValidationError:
        return 3
    if not isinstance(setup, Setup):
        return 3
    try:
        app = _build(root, setup, channel)
    except FapoError as exc:
        channel.send(BuildFailed(error=str(exc)))
        return 1
    channel.send(Ready())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    threading.Thread(target=_reader, args=(inp, channel, loop, app, setup), daemon=True).start()
    loop.run_forever()
    # EOF from the parent: exit now, without joining a node thread that may never return
    out.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))

"""Evaluating candidate chain code (the `code` level) in a sandboxed worker: the parent's side.

The worker (`python -m fapo.worker_main`, in bubblewrap without network, keys or sealed files)
gets example inputs, never labels, and returns each example's steps and prediction; its model
calls come back here and run through fapo/llm.py (call cache, meter, budget, rate limits) exactly
as in-process calls do (fapo/worker_calls.py). Scoring stays in the parent (fapo/evaluate.py).

Protocol (fapo/worker_protocol.py): one JSON object a line over the worker's stdin/stdout, every
message a frozen pydantic model; anything malformed or out of turn from the worker ends it (fail
closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fapo import sandbox
from fapo.candidate import copy_for_worker, python_paths
from fapo.errors import FapoError
from fapo.llm import ModelFactory
from fapo.records import Example, Record
from fapo.tenant import Tenant
from fapo.worker_admission import Admission
from fapo.worker_calls import answer
from fapo.worker_protocol import (
    FROM_WORKER,
    MAX_LINE,
    BuildFailed,
    Done,
    ModelCall,
    Ready,
    RunExample,
    Setup,
    encode,
    failed_example,
)

#: Seconds one example may take in the worker, its proxied model calls included (a slow
#: provider's retries back off for up to 30 s each). Past it the example is the chain's error.
EXAMPLE_TIMEOUT_S = 300.0
#: Extra seconds the parent waits past the worker's own limit before it kills the worker (an
#: endless loop in an `async` node blocks the worker's event loop, so its own timer never fires).
GRACE_S = 10.0


# -- when to use it ----------------------------------------------------------------------------


def refuse_or_allow(tenant: Tenant, *, sandbox_required: bool) -> bool:
    """True when candidate code can go to the worker; False to evaluate it in this process
    (no bwrap here and `--no-sandbox`); otherwise a one-line refusal."""
    why = sandbox.unavailable()
    if why is None:
        return True
    if sandbox_required:
        raise FapoError(
            f"{tenant.root / 'chain.py'}: refusing to evaluate a code-level candidate outside a "
            f"sandbox ({why}); install bubblewrap, or pass --no-sandbox to run it in this process"
        )
    return False


# -- the parent's side -------------------------------------------------------------------------


class WorkerBroken(Exception):
    """The worker died, hung or broke the protocol; the examples in flight did not finish."""


class SandboxedChain:
    """One variant's chain in a bubblewrap'd worker process; see the module docstring.

    `trace(example, repeat)` runs one example there; up to `setup.concurrency` run at once.
    A worker that hangs, dies or breaks the protocol is killed; the examples it had in flight
    are retried once on a fresh worker, then recorded as the chain's errors."""

    def __init__(self, tenant: Tenant, factory: ModelFactory, setup: Setup) -> None:
        self.tenant, self.factory, self.setup = tenant, factory, setup
        self.failure: BaseException | None = None  # budget / outage: stops the evaluation
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[Any]] = []  # the reader and stderr drain
        self._calls: set[asyncio.Task[None]] = set()  # model calls being served
        self._jobs: dict[int, asyncio.Future[Done]] = {}
        self._ready: asyncio.Future[Ready | BuildFailed] | None = None
        self._ids = itertools.count(1)
        self._models: dict[str, Any] = {}
        self._start_lock = asyncio.Lock()
        self._turn = Admission()  # a retry after a hang or crash runs by itself
        self._write_lock = asyncio.Lock()
        self._stderr = b""
        self._killer: asyncio.Future[None] | None = None
        self.starts = 0  # workers started (restarts after a hang or crash included)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start (or restart) the worker and build the chain there; a build failure is raised
        as the FapoError an in-process build would have raised."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fapo-worker-")
            root = Path(self._tmp.name).resolve() / "tenant"
            root.mkdir()
            copy_for_worker(self.tenant, root)
        tmp = Path(self._tmp.name).resolve()
        box = sandbox.Sandbox(readable=(*python_paths(), tmp / "tenant"), share_net=False,
                              chdir=tmp)  # fmt: skip
        env = {"LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}
        argv, env = box.wrap([sys.executable, "-m", "fapo.worker_main", str(tmp / "tenant")], env)
        self._stderr = b""
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=MAX_LINE,
            start_new_session=True,  # its own process group: killed as one
        )
        self.starts += 1
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        proc = self._proc
        self._tasks = [
            asyncio.create_task(self._read(proc)),
            asyncio.create_task(self._drain_stderr(proc)),
        ]
        await self._send(self.setup)
        limit = self.setup.build_timeout_s + GRACE_S
        try:
            first = await asyncio.wait_for(asyncio.shield(self._ready), limit)
        except TimeoutError:
            await self._kill(f"building the chain took over {limit:g} s")
            raise FapoError(
                f"{self.tenant.root / 'chain.py'}: building the chain in the sandboxed worker "
                f"did not finish within {limit:g} s; fix chain.py"
            ) from None
        except WorkerBroken as exc:
            raise FapoError(f"{self.tenant.root / 'chain.py'}: {exc}") from None
        if isinstance(first, BuildFailed):  # named as the tenant's file, not the worker's copy
            await self._kill("")
            raise FapoError(first.error.replace(str(tmp / "tenant"), str(self.tenant.root)))

    async def close(self) -> None:
        """Kill the worker (it holds nothing worth a goodbye) and remove its files."""
        await self._kill("")
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _kill(self, reason: str) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for task in [*self._tasks, *self._calls]:
            task.cancel()
        self._tasks = []
        self._calls = set()
        self._break(reason or "the worker was stopped")

    def _break(self, reason: str) -> None:
        """Every example in flight fails (retried once by `trace`)."""
        err = self.failure or WorkerBroken(reason)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(err)
            self._ready.exception()  # retrieved: no "never retrieved" warning when unused
        jobs, self._jobs = self._jobs, {}
        for fut in jobs.values():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # retrieved: a job abandoned by a timeout must not warn

    # -- I/O ---------------------------------------------------------------------------------
    async def _send(self, msg: Record) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise WorkerBroken("the worker is not running")
        async with self._write_lock:
            try:
                proc.stdin.write(encode(msg))
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise WorkerBroken(f"the worker closed its input ({exc})") from None

    async def _drain_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            self._stderr = (self._stderr + chunk)[-8192:]

    def _tail(self) -> str:
        lines = self._stderr.decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "no output"

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        """Dispatch the worker's messages; anything malformed ends the worker (fail closed)."""
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # longer than MAX_LINE
                return await self._violation("a message over the line limit")
            if not line:
                rc = await proc.wait()
                await asyncio.sleep(0.05)  # let stderr's last line arrive
                return self._fail_from_reader(f"the worker exited (code {rc}): {self._tail()}")
            try:
                msg = FROM_WORKER.validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                return await self._violation(f"a malformed message ({where}: {first['msg']})")
            if isinstance(msg, Ready | BuildFailed):
                if self._ready is None or self._ready.done():
                    return await self._violation("an unexpected ready/build message")
                self._ready.set_result(msg)
            elif isinstance(msg, ModelCall):
                task = asyncio.create_task(self._serve(msg, proc))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
            else:
                fut = self._jobs.pop(msg.job, None)
                if fut is None:
                    return await self._violation(f"a result for job {msg.job} it was not given")
                if not fut.done():
                    fut.set_result(msg)

    def _fail_from_reader(self, reason: str) -> None:
        if self._proc is not None and self._proc.returncode is not None:
            self._proc = None
        self._break(reason)

    async def _violation(self, what: str) -> None:
        # killed from a task of its own: `_kill` cancels this reader task
        self._killer = asyncio.ensure_future(self._kill(f"the sandboxed worker sent {what}"))

    # -- model calls -------------------------------------------------------------------------
    def _model(self, role: str, settings: dict[str, Any]) -> Any:
        key = json.dumps([role, settings], sort_keys=True)
        if key not in self._models:
            self._models[key] = self.factory(role, **settings)
        return self._models[key]

    async def _serve(self, msg: ModelCall, proc: asyncio.subprocess.Process) -> None:
        """Perform one of the chain's model calls through fapo/llm.py and answer the worker."""
        reply, stop = await answer(msg, lambda: self._model(msg.role, msg.settings))
        if stop is not None:  # budget spent or provider outage: the whole evaluation stops
            self.failure = self.failure or stop
            self._break(str(stop))
        if proc is self._proc:  # never to a restarted worker: it did not ask
            with contextlib.suppress(WorkerBroken):
                await self._send(reply)

    # -- examples ----------------------------------------------------------------------------
    async def _ensure(self) -> None:
        async with self._start_lock:
            if self.failure is not None:
                raise self.failure
            if self._proc is None or self._proc.returncode is not None:
                await self.start()

    async def _once(self, ex: Example, repeat: int, alone: bool) -> Done:
        await self._ensure()
        job = next(self._ids)
        fut: asyncio.Future[Done] = asyncio.get_running_loop().create_future()
        self._jobs[job] = fut
        run = RunExample(job=job, example_id=ex.id, repeat=repeat, inputs=dict(ex.inputs))
        await self._send(run)
        limit = self.setup.example_timeout_s + GRACE_S
        try:
            done = await asyncio.wait_for(asyncio.shield(fut), limit)
        except TimeoutError:
            # The worker's own timer did not fire: its event loop is blocked. Whose fault it
            # is shows only when the example runs by itself (`trace` retries it so).
            sole = alone or self._turn.inflight == 1
            await self._kill(f"example {ex.id} blocked the worker past {limit:g} s")
            if not sole:
                raise WorkerBroken(f"the worker stopped answering for {limit:g} s") from None
            return failed_example(
                job,
                "TimeoutError",
                f"example {ex.id} did not finish within {limit:g} s in the sandboxed worker "
                "(an endless loop in chain.py?); the worker was killed",
                timed_out=True,
            )
        if done.timed_out:  # a node may still spin in a thread: start afresh for the rest
            await self._kill(f"example {ex.id} ran past the time limit")
        return done

    async def trace(self, ex: Example, repeat: int) -> Done:
        """One example's steps, prediction and error from the worker. Budget and outage
        errors propagate, as they do in-process. An example whose worker hung, crashed or
        broke the protocol is run again by itself; what happens then is its own record."""
        for alone in (False, True):
            await self._turn.admit(alone)
            try:
                return await self._once(ex, repeat, alone)
            except WorkerBroken as exc:
                if self.failure is not None:
                    raise self.failure from None
                if alone:
                    return failed_example(0, "WorkerBroken", f"{exc}")
            finally:
                await self._turn.release(alone)
        raise AssertionError("unreachable")


async def open_worker(
    tenant: Tenant,
    factory: ModelFactory,
    *,
    variant: str,
    split: str,
    concurrency: int,
    example_timeout_s: float = EXAMPLE_TIMEOUT_S,
) -> SandboxedChain:
    """A started worker holding `tenant`'s chain, built (a build error raises FapoError)."""
    setup = Setup(
        models=dict(tenant.spec.models),
        prediction=tenant.spec.prediction,
        tenant=tenant.name,
        variant=variant,
        split=split,
        concurrency=concurrency,
        example_timeout_s=example_timeout_s,
        build_timeout_s=tenant.settings.defaults.build_timeout_s,
    )
    box = SandboxedChain(tenant, factory, setup)
    try:
        await box.start()
    except BaseException:
        await box.close()
        raise
    return box

"""The sandboxed worker's protocol: one frozen pydantic message a JSON line, in both directions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from fapo.call_errors import CallErrorKind
from fapo.records import Record

#: Longest protocol line (an example's steps with every model answer; answers are capped at
#: 100k characters each by [model_calls] max_output_chars).
MAX_LINE = 64 * 1024 * 1024


class Setup(Record):
    """First message to the worker: how to build the chain and label its runs."""

    kind: Literal["setup"] = "setup"
    models: dict[str, str]  # role -> spec (after --model overrides)
    prediction: str  # state key holding the prediction
    tenant: str
    variant: str
    split: str
    concurrency: int
    example_timeout_s: float
    build_timeout_s: float


class RunExample(Record):
    kind: Literal["run"] = "run"
    job: int
    example_id: str
    repeat: int
    inputs: dict[str, Any]  # inputs only: the label never leaves the parent


class CallFailure(Record):
    """A model call that failed after its attempts (fapo.llm.ModelCallError, field by field)."""

    error_kind: CallErrorKind
    text: str
    attempts: int
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class CallReply(Record):
    """The parent's answer to a ModelCall: the message, or the failure, or `abort` (the whole
    evaluation stopped: budget spent or provider outage)."""

    kind: Literal["reply"] = "reply"
    call: int
    message: dict[str, Any] | None = None  # langchain message_to_dict of the answer
    generation_info: dict[str, Any] | None = None
    llm_output: dict[str, Any] | None = None
    failure: CallFailure | None = None
    abort: str | None = None


class Ready(Record):
    kind: Literal["ready"] = "ready"


class BuildFailed(Record):
    kind: Literal["build_failed"] = "build_failed"
    error: str


class ModelCall(Record):
    """A chat-model call the chain made in the worker, for the parent to perform."""

    kind: Literal["call"] = "call"
    call: int
    role: str
    settings: dict[str, Any]  # ctx.llm(role, **settings)
    messages: list[dict[str, Any]]  # langchain messages_to_dict
    stop: list[str] | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)  # per-call (bind / invoke) arguments
    repeat: int = 0
    sample: int = 0


class CallRec(Record):
    """One model call as fapo.tracing.StepRecorder records it."""

    node: str | None
    model: str | None
    settings: dict[str, Any]
    sample: int
    messages: list[dict[str, Any]]
    output: Any
    finish_reason: str | None
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float
    cache_hit: bool
    error: str | None
    error_kind: CallErrorKind | None
    attempts: int
    capped: bool
    output_in_update: str | None = None


class StepRec(Record):
    step: str
    start_s: float | None
    duration_s: float | None
    update: Any
    error: str | None
    calls: list[CallRec]


class ExampleError(Record):
    step: str | None
    type: str
    message: str
    kind: CallErrorKind | None
    infrastructure: bool


class Done(Record):
    kind: Literal["done"] = "done"
    job: int
    steps: list[StepRec]
    prediction: Any = None
    error: ExampleError | None = None
    timed_out: bool = False  # the worker's own time limit ended the example


ToWorker = Annotated[Setup | RunExample | CallReply, Field(discriminator="kind")]
FromWorker = Annotated[Ready | BuildFailed | ModelCall | Done, Field(discriminator="kind")]
TO_WORKER: TypeAdapter[Any] = TypeAdapter(ToWorker)
FROM_WORKER: TypeAdapter[Any] = TypeAdapter(FromWorker)


def encode(msg: Record) -> bytes:
    return msg.model_dump_json().encode() + b"\n"


def failed_example(job: int, type_: str, message: str, *, timed_out: bool = False) -> Done:
    """The record of an example the worker did not finish: the chain's error, not infra."""
    err = ExampleError(step=None, type=type_, message=message[:2000], kind=None,
                       infrastructure=False)  # fmt: skip
    return Done(job=job, steps=[], error=err, timed_out=timed_out)

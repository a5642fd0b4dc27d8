"""A worker's model call, in the parent: performed through fapo/llm.py, answered as a reply."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fapo.call_errors import CallErrorKind, ModelCallError
from fapo.errors import BudgetExhausted, ProviderOutage
from fapo.runtime import REPEAT, SAMPLE
from fapo.tracing import jsonable
from fapo.worker_protocol import CallFailure, CallReply, ModelCall


async def answer(
    msg: ModelCall, model: Callable[[], Any]
) -> tuple[CallReply, BudgetExhausted | ProviderOutage | None]:
    """Perform one of the chain's model calls with `model()` (this task's own context carries
    the example's repeat and sample, as the in-process call's would). The reply, and the budget
    or outage error that must stop the whole evaluation (the reply then says `abort`)."""
    from langchain_core.messages import message_to_dict, messages_from_dict

    REPEAT.set(msg.repeat)
    SAMPLE.set(msg.sample)
    try:
        result = await model()._agenerate(
            messages_from_dict(msg.messages), stop=msg.stop, **msg.kwargs
        )
        gen = result.generations[0]
        reply = CallReply(
            call=msg.call,
            message=message_to_dict(gen.message),
            generation_info=jsonable(gen.generation_info),
            llm_output=jsonable(result.llm_output),
        )
    except ModelCallError as exc:
        failure = CallFailure(
            error_kind=exc.kind,
            text=str(exc),
            attempts=exc.attempts,
            input_tokens=exc.tokens[0],
            output_tokens=exc.tokens[1],
            cost_usd=exc.cost_usd,
        )
        reply = CallReply(call=msg.call, failure=failure)
    except (BudgetExhausted, ProviderOutage) as exc:
        return CallReply(call=msg.call, abort=str(exc)), exc
    except Exception as exc:  # a setting the provider refuses, a message it cannot take
        failure = CallFailure(
            error_kind=CallErrorKind.CLIENT, text=f"{type(exc).__name__}: {exc}", attempts=0
        )
        reply = CallReply(call=msg.call, failure=failure)
    return reply, None

"""Evaluate one variant on one split: run the compiled graph per example, keep every step.

Each example's record (inputs, label, every step's state update in order with the LLM calls made
inside it, errors with their step, prediction, score) streams to `results.jsonl` as it completes,
so memory stays flat; `summary.json`/`summary.md` aggregate it. One failing example never stops
the run; a spent budget does (BudgetExhausted propagates after the partial file is kept).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fapo.artifacts import write_json, write_text
from fapo.cache import CallCache
from fapo.call_errors import ModelCallError
from fapo.data import count_rows
from fapo.errors import BudgetExhausted, ProviderOutage
from fapo.llm import ModelFactory
from fapo.meter import Meter
from fapo.records import Example
from fapo.runtime import REPEAT
from fapo.stats import bootstrap_ci, mean, percentile
from fapo.tenant import Tenant
from fapo.tracing import StepRecorder, jsonable

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

    from fapo.worker import SandboxedChain


@dataclass
class EvalSummary:
    split: str
    n: int
    mean: float
    ci_low: float
    ci_high: float
    repeats: int
    errors: int
    steps: dict[str, dict[str, Any]]
    calls: int
    cache_hits: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    wall_s: float
    latency_p50_s: float
    latency_p95_s: float
    scores: dict[str, float] = field(default_factory=dict)  # per example (mean over repeats)
    fingerprint: str = ""
    # `calls` counts HTTP attempts (retries and failures included); of those, how many failed
    failed_calls: int = 0
    call_errors: dict[str, int] = field(default_factory=dict)  # calls failed after retries, by kind
    infra_errors: int = 0  # examples lost to provider infrastructure (never the agent's to fix)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> EvalSummary:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _prediction_of(state: dict[str, Any], key: str) -> Any:
    return state.get(key)


def _infrastructure_error(exc: BaseException) -> ModelCallError | None:
    """The ModelCallError behind a step's exception (a chain may wrap it), if it was caused by
    the provider's infrastructure rather than by anything the chain did."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ModelCallError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


@dataclass(frozen=True)
class _Labels:
    """What every traced run of one evaluation is labelled with (LangSmith, user callbacks)."""

    tenant: str
    variant: str
    split: str
    concurrency: int
    callbacks: tuple[Any, ...]

    def config(self, ex: Example, repeat: int, recorder: StepRecorder) -> RunnableConfig:
        return {
            "run_name": f"fapo:{self.tenant}",
            "tags": [f"tenant:{self.tenant}", f"variant:{self.variant}", f"split:{self.split}"],
            "metadata": {
                "tenant": self.tenant,
                "variant": self.variant,
                "split": self.split,
                "example_id": ex.id,
                "repeat": repeat,
            },
            "max_concurrency": self.concurrency,
            "callbacks": [recorder, *self.callbacks],
        }


@dataclass(frozen=True)
class Traced:
    """What running the graph on one example gave: its steps (with their calls), the
    prediction (None after an error) and the error. In-process or from the sandboxed worker
    (fapo/worker.py), so records are built the same way from either."""

    steps: list[dict[str, Any]]
    prediction: Any
    error: dict[str, Any] | None


async def trace_example(
    app: Any, ex: Example, repeat: int, labels: _Labels, prediction_key: str, t0: float
) -> Traced:
    """Run the compiled graph on `ex.inputs` (the label is never read) under a labelled
    RunnableConfig whose callback handler (fapo.tracing.StepRecorder) records each step's
    update, timing, error and calls. Budget and outage errors propagate."""
    REPEAT.set(repeat)
    rec = StepRecorder(t0)
    state: dict[str, Any] = dict(ex.inputs)
    error = None
    try:
        out = await app.ainvoke(dict(ex.inputs), labels.config(ex, repeat, rec))
        if isinstance(out, dict):
            state = out
    except (BudgetExhausted, ProviderOutage):
        raise
    except Exception as exc:
        error = step_error(rec.steps, exc)
    steps = rec.steps
    if rec.orphan_calls:  # calls outside any step (a model called outside the graph): kept
        for call in rec.orphan_calls:
            steps.append(
                {
                    "step": call["node"] or "?",
                    "start_s": None,
                    "duration_s": None,
                    "update": None,
                    "error": None,
                    "calls": [call],
                }
            )
    prediction = None if error else _prediction_of(state, prediction_key)
    return Traced(steps, prediction, error)


def step_error(steps: list[dict[str, Any]], exc: BaseException) -> dict[str, Any]:
    """The record of an exception that ended an example: the failing step and its typed cause."""
    failing = next((s["step"] for s in steps if s["error"]), None)
    if failing is None:
        failing = next((s["step"] for s in reversed(steps) if s["duration_s"] is None), None)
    call_error = _infrastructure_error(exc)
    return {
        "step": failing,
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        # typed cause: a model-call failure kind (fapo.llm.CallErrorKind) or None for code
        "kind": call_error.kind.value if call_error else None,
        "infrastructure": bool(call_error and call_error.infrastructure),
    }


def _record(tenant: Tenant, ex: Example, index: int, repeat: int, t: Traced, t0: float) -> dict:
    """One example's results.jsonl record: scored here, in the parent, from the prediction."""
    score = tenant.scorer(ex, t.prediction)
    calls = [c for s in t.steps for c in s["calls"]]
    return {
        "index": index,
        "id": ex.id,
        "repeat": repeat,
        "inputs": ex.inputs,
        "label": ex.label,
        "steps": t.steps,
        "prediction": jsonable(t.prediction),
        "score": score.value,
        "details": jsonable(score.details),
        "error": t.error,
        "latency_s": time.perf_counter() - t0,
        # HTTP attempts (retries included) of this example's calls that missed the cache
        "calls": sum(c["attempts"] for c in calls if not c["cache_hit"]),
        "cache_hits": sum(c["cache_hit"] for c in calls),
        "tokens": sum(c["input_tokens"] + c["output_tokens"] for c in calls if not c["cache_hit"]),
        "cost_usd": sum(c["cost_usd"] for c in calls),
    }


async def _run_example(
    app: Any, tenant: Tenant, ex: Example, index: int, repeat: int, labels: _Labels
) -> dict:
    """One example, one repeat, in this process."""
    t0 = time.perf_counter()
    traced = await trace_example(app, ex, repeat, labels, tenant.spec.prediction, t0)
    return _record(tenant, ex, index, repeat, traced, t0)


async def _open_sealed(
    tenant: Tenant,
    factory: ModelFactory,
    variant: str | None,
    split: str,
    concurrency: int,
    sandbox: bool,
) -> SandboxedChain | None:
    """sealing: the started worker for candidate chain code, or None to run in-process."""
    from fapo import worker
    from fapo.candidate import is_candidate_code

    if not is_candidate_code(tenant):
        return None
    if not worker.refuse_or_allow(tenant, sandbox_required=sandbox):
        return None
    name = variant or f"fp-{tenant.fingerprint()[:8]}"
    return await worker.open_worker(
        tenant, factory, variant=name, split=split, concurrency=concurrency
    )


async def _run_sealed(box: SandboxedChain, tenant: Tenant, ex: Example, i: int, r: int) -> dict:
    """sealing: one example in the worker (it never sees the label), scored here."""
    t0 = time.perf_counter()
    done = await box.trace(ex, r)
    steps = [s.model_dump(exclude_unset=True) for s in done.steps]
    for s, rec in zip(steps, done.steps, strict=True):  # keys as StepRecorder writes them
        s["calls"] = [c.model_dump(mode="json", exclude_unset=True) for c in rec.calls]
    error = done.error.model_dump(mode="json") if done.error else None
    return _record(tenant, ex, i, r, Traced(steps, done.prediction, error), t0)


class _Aggregate:
    """Running totals for the summary, so records never need to be held in memory."""

    def __init__(self) -> None:
        self.per_example: dict[str, list[float]] = {}
        self.index: dict[str, int] = {}  # dataset position, so summaries do not depend on timing
        self.errors = self.infra_errors = 0
        self.call_errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.steps: dict[str, dict[str, Any]] = {}

    def add(self, r: dict[str, Any]) -> None:
        if r["id"] not in self.per_example:
            self.per_example[r["id"]] = []
            self.index[r["id"]] = r["index"]
        self.per_example[r["id"]].append(r["score"])
        self.latencies.append(r["latency_s"])
        if r["error"]:
            self.errors += 1
            self.infra_errors += bool(r["error"].get("infrastructure"))
        for s in r["steps"]:
            st = self.steps.setdefault(
                s["step"],
                {"runs": 0, "errors": 0, "times": [], "calls": 0, "tokens": 0, "truncated": 0},
            )
            st["runs"] += 1
            st["errors"] += bool(s.get("error"))
            if s.get("duration_s") is not None:
                st["times"].append(s["duration_s"])
            for c in s.get("calls", []):
                if c.get("error_kind"):
                    kind = c["error_kind"]
                    self.call_errors[kind] = self.call_errors.get(kind, 0) + 1
                st["calls"] += 0 if c["cache_hit"] else c.get("attempts", 1)
                st["tokens"] += 0 if c["cache_hit"] else c["input_tokens"] + c["output_tokens"]
                st["truncated"] += c["finish_reason"] == "length"
        if (
            r["error"]
            and r["error"]["step"]
            and r["error"]["step"] not in {s["step"] for s in r["steps"] if s.get("error")}
        ):
            st = self.steps.setdefault(
                r["error"]["step"],
                {"runs": 0, "errors": 0, "times": [], "calls": 0, "tokens": 0, "truncated": 0},
            )
            st["errors"] += 1


def _summary_md(tenant: Tenant, s: EvalSummary) -> str:
    sim = (
        " (offline simulated model, not an LLM)"
        if tenant.spec.models["task"].startswith("sim:")
        else ""
    )
    lines = [
        f"# {tenant.name} · {s.split}",
        "",
        f"Task model: `{tenant.spec.models['task']}`{sim}",
        "",
        f"- Mean score: **{s.mean:.3f}** (95% bootstrap CI {s.ci_low:.3f}–{s.ci_high:.3f}), "
        f"n={s.n}, repeats={s.repeats}",
        f"- Errors: {s.errors}"
        + (f" ({s.infra_errors} from provider infrastructure)" if s.infra_errors else ""),
        f"- Model calls: {s.calls} HTTP attempts ({s.failed_calls} failed), {s.cache_hits} from "
        f"cache; tokens {s.input_tokens + s.output_tokens}; cost ${s.cost_usd:.4f}",
        f"- Latency per example: p50 {s.latency_p50_s * 1000:.1f} ms, "
        f"p95 {s.latency_p95_s * 1000:.1f} ms; wall {s.wall_s:.2f} s",
        *(
            [
                "- Calls failed after retries: "
                + ", ".join(f"{k} {v}" for k, v in s.call_errors.items())
            ]
            if s.call_errors
            else []
        ),
        "",
        "| step | runs | errors | truncated | calls | tokens | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, st in s.steps.items():
        lines.append(
            f"| {name} | {st['runs']} | {st['errors']} | {st['truncated']} | "
            f"{st['calls']} | {st['tokens']} | {st['p50_s'] * 1000:.1f} | "
            f"{st['p95_s'] * 1000:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _key_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".key")


def _finished_before(partial: Path, key: str) -> list[dict[str, Any]]:
    """Records an interrupted evaluation of the same variant, split, repeats and limit wrote to
    `results.jsonl.partial` (a wall-clock budget stop, a kill): reused, so a resumed evaluation
    pays for none of them again, with or without the call cache. A torn last line ends them.
    Examples lost to provider infrastructure are run again (failed calls are not cached either):
    after an outage they are not the example's outcome."""
    kp = _key_path(partial)
    if not (partial.is_file() and kp.is_file()) or kp.read_text(encoding="utf-8") != key:
        return []
    kept = []
    with partial.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            if not (record.get("error") or {}).get("infrastructure"):
                kept.append(record)
    return kept


_heap_frozen = False


def _freeze_heap() -> None:
    """Once per process, move every object alive now (imported libraries, the tenant, the compiled
    graph) out of the cyclic collector's reach with `gc.freeze()`. Otherwise each full collection
    rescans that long-lived heap: measured at 11% of the CPU of evaluating 1,000 examples (plain
    LangGraph `abatch` loses 18% the same way). Objects freed later by refcount are still freed."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.freeze()


def _sorted_into(partial: Path, final: Path) -> None:
    """results.jsonl in (example, repeat) order, not the order examples finished in: readers
    that take the first records (a brief's traces, joint's binding) then see the same examples
    however the run was scheduled. Measured: under load, intake-route's structure proposal saw
    another branch's trace first and raced another set of moves (3,688 vs 3,736 calls). Only
    each line's key and offset are held (holding the lines raised `fapo eval`'s peak RSS on
    10,000 examples from 85 to 185 MB, bench/memory.py)."""
    spans: list[tuple[int, int, int, int]] = []
    with partial.open("rb") as fh:
        at = 0
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                spans.append((int(rec["index"]), int(rec.get("repeat", 0)), at, len(line)))
            at += len(line)
    spans.sort()
    tmp = partial.with_name(partial.name + ".sorted")
    with partial.open("rb") as src, tmp.open("wb") as out:
        for _, _, offset, size in spans:
            src.seek(offset)
            line = src.read(size)
            out.write(line if line.endswith(b"\n") else line + b"\n")
    os.replace(tmp, final)
    partial.unlink(missing_ok=True)


async def aevaluate(
    tenant: Tenant,
    split: str,
    *,
    out_dir: Path | None = None,
    limit: int | None = None,
    concurrency: int | None = None,
    cache: CallCache | None = None,
    use_cache: bool = True,
    repeats: int = 1,
    meter: Meter | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    callbacks: Sequence[Any] = (),
    variant: str | None = None,
    ids: Collection[str] | None = None,
    draws: Collection[tuple[str, int]] | None = None,
    sandbox: bool = True,
) -> EvalSummary:
    """Evaluate `tenant` (a variant) on `split`. See module docstring.

    `callbacks`: LangChain callback handlers that receive every example's graph run, labelled
    (run name `fapo:<tenant>`, tags tenant/variant/split, metadata with the example id and
    repeat); LangSmith joins through its own environment variables. `variant` names the variant
    in those labels (default: `fp-` and the first 8 characters of its fingerprint). `ids`: only
    these examples of the split (the built-in agent's minibatches, `fapo.racing`; a look of
    sequential acceptance, `fapo.sequential`), all when None. `draws`: only these (id, repeat)
    pairs among those (a look of a draw-by-draw comparison, `fapo.noise`; a draw's calls carry
    its repeat, so it scores the same as in a full evaluation).

    A variant whose chain.py is not the tenant folder's own (the `code` level) is evaluated in a
    sandboxed worker (fapo/worker.py, docs/security.md); where bubblewrap cannot run that is
    refused in one line unless `sandbox=False` (`--no-sandbox`) lets it run in this process.
    `callbacks` do not reach the worker's graph runs.

    `on_progress(done, total)` is called after every finished example (repeats count apart);
    an exception it raises (BudgetExhausted: the wall clock) ends the evaluation like a spent
    call budget: examples in flight finish and are written, none starts, the exception
    propagates."""
    concurrency = concurrency or tenant.spec.concurrency or tenant.settings.defaults.concurrency
    own_cache = None
    if cache is None and use_cache:
        cache = own_cache = CallCache(tenant.settings.cache_path)
    meter = meter or Meter()
    before = meter.snapshot()
    factory = ModelFactory(
        dict(tenant.spec.models), tenant.settings, cache if use_cache else None, meter
    )
    # sealing: candidate chain code (the `code` level) runs in a sandboxed worker, not here
    box = await _open_sealed(tenant, factory, variant, split, concurrency, sandbox)
    app = tenant.build(factory)[0].compile() if box is None else None
    _freeze_heap()
    path = tenant.data_path(split)
    total = count_rows(path) if path.is_file() else 0
    total = min(total, limit) if limit is not None else total
    only = None if ids is None else frozenset(ids)  # gating: a minibatch of the split
    total = total if only is None else min(total, len(only))
    pairs = None if draws is None else frozenset((i, r) for i, r in draws if r < repeats)
    partial = out_dir / "results.jsonl.partial" if out_dir else None
    subset = "" if only is None else " ids=" + hashlib.sha256("\n".join(sorted(only)).encode()).hexdigest()[:16]  # fmt: skip
    if pairs is not None:  # moves: a look of draws pays for those draws only
        subset += " draws=" + hashlib.sha256("\n".join(f"{i}#{r}" for i, r in sorted(pairs)).encode()).hexdigest()[:16]  # fmt: skip
    key = f"{tenant.fingerprint()} {split} repeats={repeats} limit={limit}{subset}"
    kept = _finished_before(partial, key) if partial else []  # progress: an interrupted run's
    skip = {(r["index"], r["repeat"]) for r in kept}
    jobs = (
        (i, ex, r)
        for i, ex in enumerate(tenant.examples(split))
        if (limit is None or i < limit) and (only is None or ex.id in only)
        for r in range(repeats)
        if (i, r) not in skip and (pairs is None or (ex.id, r) in pairs)
    )
    labels = _Labels(
        tenant.name,
        variant or f"fp-{tenant.fingerprint()[:8]}",
        split,
        concurrency,
        tuple(callbacks),
    )
    agg = _Aggregate()
    fh = None
    if partial:
        partial.parent.mkdir(parents=True, exist_ok=True)
        write_text(_key_path(partial), key)
        fh = partial.open("w", encoding="utf-8")
        for record in kept:  # progress: finished examples are kept, never paid twice
            agg.add(record)
            fh.write(json.dumps(record, default=str) + "\n")
    done = len(kept)
    planned = total * repeats if pairs is None else min(total * repeats, len(pairs))
    t0 = time.perf_counter()
    failure: BaseException | None = None

    async def worker() -> None:
        nonlocal done, failure
        for i, ex, r in jobs:
            if failure is not None:
                return
            try:
                if box is None:
                    record = await _run_example(app, tenant, ex, i, r, labels)
                else:  # sealing: inputs go to the worker, scoring stays here
                    record = await _run_sealed(box, tenant, ex, i, r)
            except BaseException as exc:  # budget or scorer contract: stop everything
                failure = failure or exc
                return
            agg.add(record)
            if fh:
                fh.write(json.dumps(record, default=str) + "\n")
            done += 1
            if on_progress:
                try:  # progress: the hook may stop the evaluation (a spent wall-clock budget)
                    on_progress(done, planned)
                except BaseException as exc:  # like a budget: no new example starts, the
                    failure = failure or exc  # ones in flight finish and are kept
                    return

    try:
        await asyncio.gather(*(asyncio.create_task(worker()) for _ in range(concurrency)))
    finally:
        if fh:
            fh.close()
        if box is not None:  # sealing: the worker never outlives its evaluation
            await box.close()
        if own_cache:
            own_cache.close()
    if failure is not None:
        raise failure
    if partial:
        _sorted_into(partial, out_dir / "results.jsonl")
        _key_path(partial).unlink(missing_ok=True)
    scores = {k: mean(agg.per_example[k]) for k in sorted(agg.index, key=agg.index.__getitem__)}
    values = list(scores.values())
    lo, hi = bootstrap_ci(values, seed=tenant.spec.seed)
    after = meter.snapshot()
    steps = {}
    for name, st in agg.steps.items():
        times = st.pop("times")
        steps[name] = {**st, "p50_s": percentile(times, 0.5), "p95_s": percentile(times, 0.95)}
    summary = EvalSummary(
        split=split,
        n=len(values),
        mean=mean(values),
        ci_low=lo,
        ci_high=hi,
        repeats=repeats,
        errors=agg.errors,
        steps=steps,
        calls=after["calls"] - before["calls"],
        cache_hits=after["cache_hits"] - before["cache_hits"],
        input_tokens=after["input_tokens"] - before["input_tokens"],
        output_tokens=after["output_tokens"] - before["output_tokens"],
        cost_usd=round(after["cost_usd"] - before["cost_usd"], 6),
        wall_s=time.perf_counter() - t0,
        latency_p50_s=percentile(agg.latencies, 0.5),
        latency_p95_s=percentile(agg.latencies, 0.95),
        scores=scores,
        fingerprint=tenant.fingerprint(),
        failed_calls=after["failed_calls"] - before["failed_calls"],
        call_errors=dict(sorted(agg.call_errors.items())),
        infra_errors=agg.infra_errors,
    )
    if out_dir:
        write_json(out_dir / "summary.json", summary.as_dict())
        write_text(out_dir / "summary.md", _summary_md(tenant, summary))
    return summary


def evaluate(tenant: Tenant, split: str, **kwargs: Any) -> EvalSummary:
    """Synchronous wrapper of `aevaluate` for the CLI, the loop and tests."""
    return asyncio.run(aevaluate(tenant, split, **kwargs))

"""Interventions: re-run a failing example from one step with one thing changed and watch the score.

The graph runs once per probed example under a LangGraph checkpointer (upstream model calls replay
from the call cache), then forks from the checkpoint right before a step (fapo/fork.py: a step that
shares its superstep with siblings, on a fan-out graph, is forked alone, the siblings keeping their
recorded writes; the instances of a step fanned out with `Send` are forked as one step):

- *oracle*: the tenant's `@oracle(step)` value is that step's update (the step's superstep runs
  with its node returning the value, `fork.with_update`) and the graph resumes downstream;
- *resample*: the step is drawn again with a new sample index (upstream fixed, downstream at the
  recorded index) — a repair in at least half of the draws means noise at that step;
- *reference*: the step alone is run by the tenant's `models: {reference: …}` model;
- *parameter*: the whole graph re-runs with one declared parameter moved within its bounds; the
  first step whose output changed is where the parameter acts.

Every call goes through the run's call cache and a meter of its own with a per-run cap, so a repeat
of the same attribution issues no new call and intervention spend is reported separately.

The run's wall clock is asked before every intervention (`clock`), so a `--budget-minutes` stop
lands inside an attribution too; the attribution is then not recorded, and a resume replays the
calls it had paid for from the cache.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from langchain_core.callbacks import BaseCallbackHandler

from fapo import fork, reroll
from fapo.cache import CallCache
from fapo.checks import StepOracle, collect_oracles
from fapo.errors import BudgetExhausted
from fapo.intervention_records import Kind, Trial, Verdict
from fapo.llm import Meter, ModelFactory
from fapo.param_effects import sampling_keys
from fapo.records import Example
from fapo.runtime import RECORDER, REPEAT, SAMPLE
from fapo.tenant import Tenant, _import_file

#: A score at or above this counts as a pass (same bar as attribution's failures).
PASS = 0.999
#: Sample indexes for resampling start here, far from the indexes votes and retries use (0..14).
DRAW_BASE = 100


class ClockStop(BudgetExhausted):
    """The run's wall-clock budget ran out inside an attribution: unlike the intervention cap
    (which ends interventions and lets the ladder keep the rest), it stops the run."""


def load_oracles(tenant: Tenant) -> dict[str, StepOracle]:
    """The `@oracle` functions of the tenant's checks.py, by step (none without checks.py)."""
    if not tenant.spec.checks:
        return {}
    path = tenant.root / tenant.spec.checks
    if not path.is_file():
        return {}
    return collect_oracles(_import_file(path, f"fapo_tenant_{tenant.name}_oracles"))


def parameter_moves(tenant: Tenant) -> list[tuple[str, Any]]:
    """Declared parameters moved within bounds: min, middle and max of a range (a sampling key,
    one whose move only raises a built model's temperature, `param_effects.sampling_keys`, only
    down to its minimum: raising randomness can only repair by luck), every other value of a
    bool or a short choice list."""
    current = tenant.params
    # What a key feeds is measured by building the chain, never read from its name. A chain not
    # built here (candidate code, a build error) has no sampling keys: each range then gets its
    # full min/middle/max (more moves, never a repair left untried).
    sampling = sampling_keys(tenant)
    moves: list[tuple[str, Any]] = []
    for name, ps in tenant.spec.params.items():
        if ps.type == "bool":
            values: list[Any] = [not current.get(name)]
        elif ps.type == "choice":
            values = list(ps.choices or [])[:6]
        else:
            lo, hi = float(ps.min or 0), float(ps.max or 0)
            values = [lo] if name in sampling else [lo, (lo + hi) / 2, hi]
            if ps.type == "int":
                values = [int(round(v)) for v in values]
            else:
                values = [round(v, 4) for v in values]
        for v in dict.fromkeys(values):
            if v != current.get(name):
                moves.append((name, v))
    return moves


def _with_param(tenant: Tenant, name: str, value: Any) -> Tenant:
    return tenant.variant({"params.yaml": yaml.safe_dump({**tenant.params, name: value})})


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@dataclass
class InterventionRunner:
    """Runs interventions for one tenant variant. Construct per attribution; see module doc."""

    tenant: Tenant
    cache: CallCache | None = None
    max_calls: int | None = None  # calls left in the run's intervention cap
    sample: int | None = None
    draws: int | None = None
    concurrency: int = 4
    #: Asked before every intervention; raises BudgetExhausted when the run's wall clock is spent.
    clock: Callable[[], None] | None = None
    #: The run's meter: a clock stop charges it with what the interrupted attribution spent.
    parent: Meter | None = None
    meter: Meter = field(init=False)
    stopped: str = ""  # why interventions stopped early (cap), if they did

    def __post_init__(self) -> None:
        spec = self.tenant.spec.interventions
        cap = spec.max_calls if self.max_calls is None else self.max_calls
        self.meter = Meter(max_calls=max(cap, 0))
        self.sample = self.sample or spec.sample
        self.draws = self.draws or spec.draws
        self.oracles = load_oracles(self.tenant)
        self.moves = parameter_moves(self.tenant)
        self.checks: dict[str, list[Any]] = {}
        for chk in self.tenant.checks:
            self.checks.setdefault(chk.step, []).append(chk)
        self._apps: dict[str, Any] = {}
        self._saver: Any = None
        self._llms: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # app key -> ctx.llm calls
        self._read_at_run: set[str] = set()  # parameters the chain reads while it runs

    # -- graphs --------------------------------------------------------------------------------
    def _app(self, key: str, tenant: Tenant, models: dict[str, str] | None = None) -> Any:
        """A compiled graph sharing one in-memory checkpointer (so a step can run on another
        graph, e.g. the reference model's, from the same checkpoint)."""
        if key not in self._apps:
            from langgraph.checkpoint.memory import InMemorySaver

            if self._saver is None:
                self._saver = InMemorySaver()
            factory = ModelFactory(
                models or dict(tenant.spec.models), tenant.settings, self.cache, self.meter
            )
            llms: list[tuple[str, dict[str, Any]]] = []

            def recorded(role: str = "task", **settings: Any) -> Any:
                llms.append((role, dict(settings)))
                return factory(role, **settings)

            graph, ctx = tenant.build(recorded)
            self._llms[key] = llms
            ctx.params = _Reads(ctx.params, self._read_at_run)  # reads from here on are at run time
            self._apps[key] = graph.compile(checkpointer=self._saver)
        return self._apps[key]

    def _token_limit(self, key: str, name: str) -> int | None:
        """When the parameter move built as `key` only moves the `max_tokens` of models the chain
        asks for at build time (nothing else in their settings, the chain never reads the
        parameter while it runs): the lowest limit it sets on a model it changes; else None.
        A token limit only cuts an output, so such a move cannot change a run whose every call
        stopped on its own below that limit: the trial would replay the run unchanged. Measured
        on demo-qa: these were 2 to 3 of the 6 parameter trials of a probe (96 of its 264
        intervention calls), every one a no-op."""
        base, moved = self._llms.get("base", []), self._llms.get(key, [])
        if name in self._read_at_run or len(base) != len(moved) or base == moved:
            return None
        limits: list[int] = []
        for (r0, s0), (r1, s1) in zip(base, moved, strict=True):
            rest0 = {k: v for k, v in s0.items() if k != "max_tokens"}
            rest1 = {k: v for k, v in s1.items() if k != "max_tokens"}
            if r0 != r1 or rest0 != rest1:
                return None
            old, new = s0.get("max_tokens"), s1.get("max_tokens")
            if old != new:
                if not isinstance(new, int) or isinstance(new, bool):
                    return None
                limits.append(new)
        return min(limits) if limits else None

    def _checks_pass(self, ex: Example, step: str, state: dict[str, Any] | None) -> bool:
        """Do the step's checks (checks.py) pass on `state`? True when it has none."""
        if state is None:
            return False
        for chk in self.checks.get(step, []):
            try:
                if chk.run(ex, state) is not None:
                    return False
            except Exception:  # a check that raises does not vouch for the step
                return False
        return True

    def _score(self, ex: Example, values: dict[str, Any]) -> float:
        return self.tenant.scorer(ex, values.get(self.tenant.spec.prediction)).value

    def _tick(self) -> None:
        """The wall clock, before each intervention (one graph run)."""
        if self.clock is not None:
            try:
                self.clock()
            except BudgetExhausted as exc:
                raise ClockStop(exc.reason) from exc

    @staticmethod
    def _repaired(score: float, base: float) -> bool:
        return score >= PASS or (score > base and score - base >= 0.5 * (1 - base))

    async def _run(
        self, app: Any, inputs: Any, cfg: dict[str, Any], **kw: Any
    ) -> list[tuple[str, Any]]:
        updates: list[tuple[str, Any]] = []
        async for chunk in app.astream(inputs, cfg, stream_mode="updates", **kw):
            for node, upd in chunk.items():
                if not node.startswith("__"):
                    updates.append((node, upd))
        return updates

    # -- one example ---------------------------------------------------------------------------
    async def probe(self, ex: Example, llm_steps: dict[str, float | None]) -> Verdict:
        """Every intervention on one failing example; the verdict names the earliest repair."""
        RECORDER.set(None)
        REPEAT.set(0)
        SAMPLE.set(0)
        self._tick()
        app = self._app("base", self.tenant)
        thread = {"configurable": {"thread_id": f"{ex.id}:{uuid.uuid4().hex}"}}
        finishes = _Finishes()
        base_updates = await self._run(app, dict(ex.inputs), {**thread, "callbacks": [finishes]})
        base_after = await _states_after(app, thread)
        failing = {st for st, state in base_after.items() if not self._checks_pass(ex, st, state)}
        final = (await app.aget_state(thread)).values
        base = self._score(ex, final)
        order = list(dict.fromkeys(n for n, _ in base_updates))
        before: dict[str, Any] = {}  # step -> the snapshot right before it first ran
        async for snap in app.aget_state_history(thread):  # newest first
            for nxt in snap.next:
                before[nxt] = snap
        trials: list[Trial] = []
        runs: dict[int, reroll.Branch] = {}  # trial index -> its run, for reroll.settle
        draw_runs: dict[int, list[tuple[bool, reroll.Branch]]] = {}  # resample -> its draws
        # A step whose calls all ran at temperature 0 has no draws to resample.
        sampling = {st for st, temp in llm_steps.items() if temp is None or temp > 0}
        if base >= PASS:
            return Verdict(
                example_id=ex.id,
                step=None,
                trials=[],
                base_score=base,
                note="passes when re-run (the recorded failure did not reproduce)",
            )

        async def resume(cfg: dict[str, Any]) -> float:
            """Run on from `cfg` (a checkpoint of this example's thread); the final score."""
            self._tick()
            await self._run(app, None, cfg)
            return self._score(ex, (await app.aget_state(thread)).values)

        for step in order:
            snap = before.get(step)
            if snap is None:
                continue
            orc = self.oracles.get(step)
            if orc is not None:
                value = orc.run(ex, dict(snap.values))
                if value is not None:
                    cfg2 = await fork.with_update(app, snap, step, value)  # siblings kept
                    s = await resume(cfg2)
                    runs[len(trials)] = reroll.Branch(app, (await app.aget_state(thread)).config)
                    trials.append(
                        Trial(
                            kind=Kind.ORACLE, step=step, repaired=self._repaired(s, base), score=s
                        )
                    )
            if step in sampling:
                wins, local, scores = 0, 0, []
                each: list[tuple[bool, reroll.Branch]] = []  # (repaired, run) per draw
                draws = self.draws or 1
                d = 0
                while d < draws:
                    token = SAMPLE.set(DRAW_BASE + d)
                    try:
                        start = await fork.alone(app, snap, {step})  # siblings not redrawn
                        await self._run(app, None, start, interrupt_after=[step])
                    finally:
                        SAMPLE.reset(token)
                    if step in failing:
                        drawn = (await app.aget_state(thread)).values
                        local += self._checks_pass(ex, step, drawn)
                    s = await resume(thread)
                    scores.append(s)
                    wins += self._repaired(s, base)
                    end = (await app.aget_state(thread)).config
                    each.append((self._repaired(s, base), reroll.Branch(app, end)))
                    d += 1
                    undecided = 0 < 2 * wins < d or (wins == 0 and 0 < 2 * local < d)
                    if d == draws and undecided and draws == (self.draws or 1):
                        # Undecided (some draws repaired, fewer than half): draw as many again
                        # rather than call noise a prompt defect on one unlucky triple.
                        draws *= 2
                n = len(scores)
                draw_runs[len(trials)] = each
                trials.append(
                    Trial(
                        kind=Kind.RESAMPLE,
                        step=step,
                        detail=f"{n} draws",
                        repaired=2 * wins >= n and wins > 0,
                        score=sum(scores) / n,
                        repairs=wins,
                        tries=n,
                        local=2 * local >= n and local > 0,
                    )
                )
            ref = self.tenant.spec.models.get("reference")
            if ref and step in llm_steps:
                rapp = self._app("reference", self.tenant, {**self.tenant.spec.models, "task": ref})
                await self._run(
                    rapp, None, await fork.alone(app, snap, {step}), interrupt_after=[step]
                )
                s = await resume(thread)
                runs[len(trials)] = reroll.Branch(app, (await app.aget_state(thread)).config)
                trials.append(
                    Trial(
                        kind=Kind.REFERENCE,
                        step=step,
                        detail=ref,
                        repaired=self._repaired(s, base),
                        score=s,
                    )
                )
        for name, value in self.moves:
            self._tick()
            key = f"param:{name}={value}"
            vapp = self._app(key, _with_param(self.tenant, name, value))
            limit = self._token_limit(key, name)
            if limit is not None and finishes.all_stopped and finishes.longest < limit:
                # the trial would replay this run unchanged: record what it would find
                trials.append(
                    Trial(
                        kind=Kind.PARAMETER,
                        step=order[-1] if order else "?",
                        detail=f"{name}={value}",
                        repaired=False,
                        score=base,
                    )
                )
                continue
            vthread = {"configurable": {"thread_id": f"{ex.id}:{uuid.uuid4().hex}"}}
            try:
                ups = await self._run(vapp, dict(ex.inputs), vthread)
            except BudgetExhausted:
                raise
            except Exception:  # a parameter value the chain cannot run with repairs nothing
                continue
            s = self._score(ex, (await vapp.aget_state(vthread)).values)
            after = await _states_after(vapp, vthread)
            mended = next(
                (st for st in order if st in failing and self._checks_pass(ex, st, after.get(st))),
                None,
            )
            was, now = (fork.in_superstep_order(x, before) for x in (base_updates, ups))
            changed = next(
                (
                    n
                    for i, (n, u) in enumerate(now)
                    if i >= len(was) or was[i][0] != n or not _same(was[i][1], u)
                ),
                None,
            )
            trials.append(
                Trial(
                    kind=Kind.PARAMETER,
                    step=changed or (order[-1] if order else "?"),
                    detail=f"{name}={value}",
                    repaired=self._repaired(s, base) and changed is not None,
                    score=s,
                    local=mended is not None and mended == changed,
                )
            )
            runs[len(trials) - 1] = reroll.Branch(vapp, (await vapp.aget_state(vthread)).config)
        # An upstream repair (a resample's draw too) that only re-rolled a downstream sampling
        # step is not credited.
        trials = await reroll.settle(
            self,
            ex,
            trials,
            runs,
            order=order,
            before=before,
            sampling=sampling,
            base=base,
            draw_base=DRAW_BASE,
            tick=self._tick,  # its extra draws honour the wall clock like every intervention
            resamples=draw_runs,
        )
        return _verdict(ex.id, order, trials, llm_steps, base)

    # -- many examples -------------------------------------------------------------------------
    async def aprobe_many(
        self, examples: list[Example], llm_steps: dict[str, float | None]
    ) -> dict[str, Verdict]:
        out: dict[str, Verdict] = {}
        queue = list(examples)

        async def worker() -> None:
            while queue and not self.stopped:
                ex = queue.pop(0)
                try:
                    out[ex.id] = await self.probe(ex, llm_steps)
                except ClockStop:
                    raise
                except BudgetExhausted as exc:
                    self.stopped = f"intervention cap reached ({exc})"
                    return

        tasks = [asyncio.create_task(worker()) for _ in range(self.concurrency)]
        try:
            await asyncio.gather(*tasks)
        except ClockStop:
            for t in tasks:  # the other probes stop too, before their spend is charged
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.stopped = "wall-clock budget spent"
            if self.parent is not None:  # the attribution is not recorded: charge the run here
                self.parent.absorb(self.meter)
            raise
        finally:
            if self.cache is not None:  # a resume replays what this attribution already paid
                self.cache.flush()
        return out

    def probe_many(
        self, examples: list[Example], llm_steps: dict[str, float | None]
    ) -> dict[str, Verdict]:
        """Synchronous `aprobe_many` (attribution runs outside any event loop)."""
        return asyncio.run(self.aprobe_many(examples, llm_steps))

    def spend(self) -> dict[str, Any]:
        return {**self.meter.snapshot(), "cap": self.meter.max_calls, "stopped": self.stopped}


def _verdict(
    ex_id: str,
    order: list[str],
    trials: list[Trial],
    llm_steps: dict[str, float | None],
    base: float,
) -> Verdict:
    """Earliest step with a repair; its level from the kind of intervention that repaired:
    a parameter move → parameter; a noise repair (resample) with no parameter fixing it →
    structure (vote/retry); the reference model or the oracle at a model step → prompt; the
    oracle at a step without model calls (retrieval, code) that no parameter fixes → structure."""
    for step in order:
        here = [t for t in trials if t.step == step and t.repaired]
        if not here:
            continue
        by = {t.kind: t for t in here}
        # The oracle says this step's output is the cause; when a parameter move (or a fresh
        # draw) makes the step's own checks pass, that is what can produce the right output, even
        # if a second defect downstream keeps the final answer wrong for that move alone.
        local = {t.kind: t for t in trials if t.step == step and t.local}
        if Kind.PARAMETER not in by and Kind.RESAMPLE not in by:
            by = {**{k: v for k, v in local.items() if k != Kind.RESAMPLE}, **by}
            if Kind.PARAMETER not in by and Kind.RESAMPLE in local:
                by[Kind.RESAMPLE] = local[Kind.RESAMPLE]
        if Kind.PARAMETER in by:
            t, level = by[Kind.PARAMETER], "parameter"
        elif Kind.RESAMPLE in by:
            t, level = by[Kind.RESAMPLE], "structure"
        elif Kind.REFERENCE in by:
            t, level = by[Kind.REFERENCE], "prompt"
        else:
            t = by[Kind.ORACLE]
            level = "prompt" if step in llm_steps else "structure"
        return Verdict(
            example_id=ex_id,
            step=step,
            level=level,
            kind=t.kind,
            detail=t.detail,
            trials=trials,
            base_score=base,
        )
    # Nothing repaired the final answer (often a second defect downstream): the earliest step
    # whose own failing checks a resample or a parameter move made pass.
    for step in order:
        local = {t.kind: t for t in trials if t.step == step and t.local}
        if Kind.PARAMETER in local or Kind.RESAMPLE in local:
            t = local.get(Kind.PARAMETER) or local[Kind.RESAMPLE]
            return Verdict(
                example_id=ex_id,
                step=step,
                level="parameter" if t.kind == Kind.PARAMETER else "structure",
                kind=t.kind,
                detail=t.detail,
                trials=trials,
                base_score=base,
                note=f"{step}'s checks pass after the intervention; the final answer still fails",
            )
    return Verdict(example_id=ex_id, step=None, trials=trials, base_score=base)


class _Reads(dict[str, Any]):
    """The chain's parameters, noting every name read (`ctx.params` once the graph is built)."""

    def __init__(self, values: Any, log: set[str]) -> None:
        super().__init__(values)
        self._log = log

    def __getitem__(self, key: str) -> Any:
        self._log.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._log.add(key)
        return super().get(key, default)


class _Finishes(BaseCallbackHandler):
    """Did every model call of one graph run stop on its own (not at its token limit, no
    error), and how long was the longest output (tokens)?"""

    run_inline = True

    def __init__(self) -> None:
        self.all_stopped = True
        self.longest = 0

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        fapo = (response.llm_output or {}).get("fapo") or {}
        if fapo.get("finish_reason") in (None, "length") or fapo.get("capped"):
            self.all_stopped = False
        self.longest = max(self.longest, int(fapo.get("output_tokens") or 0))

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.all_stopped = False


async def _states_after(app: Any, thread: dict[str, Any]) -> dict[str, Any]:
    """The state right after each step's first superstep in `thread`'s run (which must be its
    only run so far), read from the run's checkpoints: every reducer applied, so a step fanned
    out with `Send` is judged on what all its instances wrote, not on the last one's update."""
    snaps = [snap async for snap in app.aget_state_history(thread)][::-1]  # oldest first
    out: dict[str, Any] = {}
    for snap, nxt in zip(snaps, snaps[1:], strict=False):
        for name in snap.next:
            out.setdefault(name, dict(nxt.values))
    return out


def for_run(run: Any, vid: str) -> InterventionRunner | None:
    """The runner of one attribution in a `fapo.loop.Run`: variant `vid`, the run's call cache,
    and what is left of the per-run cap (`interventions.max_calls`) after the spend recorded by
    earlier attributions in the event log (so a resumed run keeps counting). None when the
    tenant disables interventions."""
    tenant: Tenant = run.variants[vid]
    spec = tenant.spec.interventions
    if not spec.enabled:
        return None
    from fapo.candidate import is_candidate_code

    if is_candidate_code(tenant):  # sealing: candidate chain code never runs in this process
        return None  # (interventions need its graph here); the ladder attributes alone
    spent = sum(
        ((e.get("data") or {}).get("interventions") or {}).get("calls", 0)
        for e in run.log.events
        if e.get("kind") == "attribution"
    )
    left = max(spec.max_calls - spent, 0)
    if run.meter.max_calls is not None:  # and never past the run's own call budget
        left = min(left, max(run.meter.max_calls - run.meter.calls, 0))
    return InterventionRunner(
        tenant,
        cache=run.cache,
        max_calls=left,
        concurrency=run.options.concurrency or tenant.settings.defaults.concurrency,
        clock=run.budget.check_clock,
        parent=run.meter,
    )


def probed_ids(log: Any, vid: str) -> list[str]:
    """Train examples the recorded attribution of variant `vid` probed (none without one)."""
    event = log.find("attribution", vid)
    data = (event or {}).get("data") or {}
    return sorted(((data.get("interventions") or {}).get("verdicts") or {}).keys())

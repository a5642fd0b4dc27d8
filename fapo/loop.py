"""`fapo run`: the optimization loop as a state machine whose every stage is recorded.

    baseline (train + val) → [stop? → attribute → stop? → escalate? → propose → review →
    compare → decide → escalate]* → sealed test (baseline + final) → observers (report)

Stages live in their own modules (evaluate, attribute, propose, review, compare, escalate, stop)
and hand typed records (`fapo.records`) to each other; this module only sequences them. Every
finished stage is an event in events.jsonl; on `--resume` the loop re-walks the same logic and
`EventLog.memo` returns what was already done, so a killed run reaches the same decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import fapo.rundir as rundir  # runs: run folders (ids, lock, status, resume options)
from fapo import observers as obs
from fapo import records as rec
from fapo import run_eval
from fapo import run_setup as setup
from fapo import sequential as seq  # sequential: staged val, run-level alpha
from fapo.agents.base import Agent
from fapo.agents.cli_runner import bind_budget  # briefs: USD budget inside agent calls
from fapo.artifacts import write_json
from fapo.attribute import ladder, with_agent
from fapo.attribution_context import attribution_context
from fapo.brief import RULES, Incumbent
from fapo.budget import stop_key
from fapo.cache import CallCache
from fapo.compare import AcceptanceRule, decide
from fapo.errors import BudgetExhausted
from fapo.escalate import EscalationPolicy, LadderPolicy, LevelState
from fapo.evaluate import EvalSummary
from fapo.history import history_entry
from fapo.interventions import for_run
from fapo.noise import paired_val  # moves:
from fapo.propose import changes_of, propose
from fapo.review import LeakIndex, record_findings, review_candidate
from fapo.run_setup import RunOptions
from fapo.settings import Settings
from fapo.stop import LoopState, StopCondition, default_stop, note_proposal
from fapo.tenant import Tenant, load_tenant

R = TypeVar("R", bound=rec.Record)


class Run:
    """One run of the loop over one tenant. Construct, then `execute()`."""

    def __init__(
        self,
        tenant: Tenant,
        options: RunOptions,
        *,
        agent: Agent | None = None,
        acceptance: AcceptanceRule | None = None,
        escalation: EscalationPolicy | None = None,
        stop: Sequence[StopCondition] = (),
        callbacks: Sequence[obs.Callback] = (),
        report: bool = True,
    ) -> None:
        self.tenant, self.options, self.settings = tenant, options, tenant.settings
        spec = tenant.spec
        self.run_id = rundir.run_id(options.run_id)  # runs: unique, safe
        self.dir = self.settings.runs_dir / tenant.name / self.run_id
        self.options = options = rundir.effective_options(self.dir, options)  # runs: resume keeps
        self.budget = setup.make_budget(spec.budget, options.budget)
        self.meter = self.budget.meter
        self.seed = spec.seed if options.seed is None else options.seed
        self.acceptance = acceptance or seq.GroupSequential(spec.acceptance, seed=self.seed)  # sequential:  # fmt: skip
        self.policy = escalation or LadderPolicy(tuple(spec.levels()), spec.escalation)
        self.stop = default_stop(spec.target_score, self.budget, *stop, levels=spec.levels())  # gating: levels  # fmt: skip
        self.agent_kind = agent.name if agent else setup.agent_kind(tenant, options)
        self._agent = agent or setup.cli_agent_now(self)  # [sandbox] refuse before any work
        self.callbacks: list[obs.Callback] = [*callbacks, *([obs.ReportWriter()] if report else [])]
        self.cache = CallCache(self.settings.cache_path) if options.use_cache else None
        self.progress = obs.RunProgress(self._notify, calls=lambda: self.meter.calls, check=self.budget.check_clock)  # fmt: skip # progress:
        self.variants: dict[str, Tenant] = {}
        self.summaries: dict[tuple[str, str], EvalSummary] = {}
        self.history: list[dict[str, Any]] = []
        self.st = LoopState(incumbent="v000", incumbent_val=0.0)
        self.folder = rundir.RunFolder(self.dir, resume=options.resume).take()  # runs: lock first
        with self.folder.abandon_on_error():  # runs:
            self.log, self.immutable = setup.open_run(self)  # refuses a bad --resume first
            self.leaks = LeakIndex(tenant)
            self.guard = setup.contain(self)  # [sandbox] tenant snapshot, known keys

    # -- helpers -----------------------------------------------------------------------------
    @property
    def agent(self) -> Agent:
        if self._agent is None:
            self._agent = setup.make_agent(self.agent_kind, self)
        return bind_budget(self._agent, self.budget)  # briefs: no agent call past max_usd

    def vdir(self, vid: str) -> Path:
        return self.dir / "variants" / vid

    def _budget(self) -> dict[str, Any]:
        return self.budget.snapshot()  # progress: the budget's clock (a test may inject one)

    def _memo(self, kind: str, key: str, record: type[R], fn: Callable[[], R]) -> R:
        return self.log.memo(kind, key, record, fn, self._budget)[0]

    def _notify(self, event: obs.Event) -> None:
        event = event.model_copy(update={"budget": self._budget()})
        if isinstance(event, obs.ProposalStarted):  # progress: moves scored from here on
            self.progress.proposal_started(event)
        for cb in self.callbacks:
            cb(event)

    @cached_property
    def functions(self) -> dict[str, Any]:
        """Functions the tenant's chain registers (for structural transforms)."""
        return setup.chain_functions(self.tenant)

    # The evaluation helpers live in fapo/run_eval.py; these names are what the stages that take
    # the run (noise, sequential, run_setup) call.
    def _evaluate(self, tenant: Tenant, split: str, watch: obs.Watch | None = None, **kw: Any) -> EvalSummary:  # fmt: skip
        return run_eval.run_evaluate(self, tenant, split, watch, **kw)

    def _eval(self, vid: str, split: str, repeats: int | None = None) -> EvalSummary:
        return run_eval.eval_once(self, vid, split, repeats)

    def train_score(self, changes: dict[str, str | None], repeats: int = 1, ids: Sequence[str] | None = None) -> dict[str, float]:  # fmt: skip
        return run_eval.train_score(self, changes, repeats, ids)

    # -- stages ------------------------------------------------------------------------------
    def _attribute(self, vid: str) -> rec.Attribution:
        def run() -> rec.Attribution:
            results = self.vdir(vid) / "eval" / "train" / "results.jsonl"
            runner = for_run(self, vid)
            att = with_agent(
                ladder(self.variants[vid], results, interventions=runner),
                attribution_context(self.agent, self.variants[vid], self.leaks),  # briefs:
                tenant=self.tenant.name,
                steps=list(self.summaries[(vid, "train")].steps),
                levels=self.tenant.spec.levels(),
                results=results,
                transcripts=self.vdir(vid) / "attribution-agent",
                scratch=rundir.scratch(self.dir),  # runs:
            )
            self.budget.agent_usd += att.agent_usd
            if runner is not None:  # interventions: their own cap, the run's budgets too
                self.meter.absorb(runner.meter)
            write_json(self.vdir(vid) / "attribution.json", att.model_dump(mode="json"))
            return att

        return self._memo("attribution", vid, rec.Attribution, run)

    def _propose(self, vid: str, level: LevelState, cluster: rec.Cluster | None) -> rec.ProposalRecord:  # fmt: skip
        inc = self.st.incumbent
        prop = propose(
            self.agent,
            Incumbent(
                id=inc,
                tenant=self.variants[inc],
                scores={s: self.summaries[(inc, s)].mean for s in ("train", "val")},
                train_results=self.vdir(inc) / "eval" / "train" / "results.jsonl",
            ),
            variant=vid,
            level=level.level,
            cluster=cluster,
            history=self.history,
            out_dir=self.vdir(vid),
            scratch=rundir.scratch(self.dir),  # runs: workspaces live in the run folder
            functions=lambda: self.functions,
            guard=self.guard,  # [sandbox] scans, reverts, leak-checked workspace, keys
        )
        self.budget.agent_usd += prop.agent_usd
        return prop

    def _review(self, vid: str, prop: rec.ProposalRecord) -> rec.ReviewRecord:
        review = review_candidate(
            self.agent,
            self.variants[prop.parent],
            prop,
            files=self.vdir(vid),
            immutable=self.immutable,
            leaks=self.leaks,
            known={t.fingerprint(): v for v, t in self.variants.items()},
            rules=RULES,
            scratch=rundir.scratch(self.dir),  # runs:
            keys=self.guard.keys,  # [sandbox] a code-level build runs in the sandboxed worker
            parent_records=self.vdir(prop.parent) / "eval" / "train" / "results.jsonl",  # joint:
        )
        self.budget.agent_usd += review.agent_usd
        return review

    def _compare(self, vid: str) -> rec.DecisionRecord:
        if isinstance(self.acceptance, seq.Staged):  # sequential: val in looks, run-level alpha
            return seq.staged_compare(self, vid, self.acceptance)  # (+ draws: fapo/noise.py)
        cand, inc = paired_val(self, vid)  # moves: sampling variants compared draw by draw
        return decide(self.acceptance, vid, self.st.incumbent, cand, inc)

    def _decide(self, vid: str, prop: rec.ProposalRecord) -> rec.DecisionRecord:
        """Invalid without evaluation if there is no proposal or review blocks it; else compare."""
        if prop.failure_kind is not None:
            why = "blocked: " if prop.failure_kind.blocks else "agent produced no proposal: "
            return rec.DecisionRecord(variant=vid, status=rec.Status.INVALID, reason=why + str(prop.failure))  # fmt: skip
        review = self._memo("review", vid, rec.ReviewRecord, lambda: self._review(vid, prop))
        if review.blocked:
            reason = "blocked by review: " + "; ".join(review.reasons())
            return rec.DecisionRecord(variant=vid, status=rec.Status.INVALID, reason=reason)
        self.variants[vid] = self.variants[prop.parent].variant(changes_of(prop, self.vdir(vid)))
        return self._memo("decision", vid, rec.DecisionRecord, lambda: self._compare(vid))

    # -- the loop ----------------------------------------------------------------------------
    def execute(self) -> rec.OptimizeResult:
        with self.folder.recording():  # `failed`/`stopped` recorded in run.json on the way out
            return self._execute()

    def _execute(self) -> rec.OptimizeResult:
        self.tenant.check_data()  # an empty split or shared ids fail the run at start
        model = self.tenant.spec.models["task"]
        sim = " (offline simulated model, not an LLM)" if model.startswith("sim:") else ""
        name, kind = self.tenant.name, self.agent_kind
        self._notify(obs.RunStarted(run_dir=self.dir, tenant=name, agent=kind, model=model + sim))
        try:
            self._eval("v000", "train")
            self.st.incumbent_val = self._eval("v000", "val").mean
            stop, level = None, LevelState(self.tenant.spec.levels()[0])
            while stop is None:
                stop, level = self._round(level)
        except BudgetExhausted as exc:
            stop = rec.Stop(kind=rec.StopKind.BUDGET, message=exc.reason)
        return self._finish(stop)

    def _round(self, level: LevelState) -> tuple[rec.Stop | None, LevelState]:
        """One candidate: attribute → escalate? → propose → review → compare → escalate."""
        st, vid = self.st, f"v{self.st.proposed + 1:03d}"
        st.fresh, st.attribution = self.log.find("proposal", vid) is None, None
        if stop := self.stop(st):
            return stop, level
        att = st.attribution = self._attribute(st.incumbent)
        if stop := self.stop(st):
            return stop, level
        moved, why = self.policy.before_proposal(level, att)
        if why:
            change = rec.LevelChange(from_level=level.level, to=moved.level, why=why)
            self.log.memo("level", vid, rec.LevelChange, lambda: change)
            self._notify(obs.LevelChanged(level=moved.level, why=why))
        level = moved
        cluster = self.policy.choose(level, att)
        cause = cluster.cause if cluster else None
        self._notify(obs.ProposalStarted(variant=vid, level=level.level, cause=cause))
        prop = self._memo("proposal", vid, rec.ProposalRecord, lambda: self._propose(vid, level, cluster))  # fmt: skip
        st.proposed = self.budget.variants = st.proposed + 1
        decision = record_findings(self._decide(vid, prop), prop, self.vdir(vid))  # briefs:
        write_json(self.vdir(vid) / "decision.json", decision.model_dump(mode="json", exclude_none=True))  # fmt: skip
        self._notify(obs.Decided(decision=decision))
        self.history.append(history_entry(prop, decision))
        note_proposal(st, level.level, prop, decision)  # gating: evidence for NothingHelps
        if decision.accepted:
            st.incumbent = vid
            st.accepted.append(vid)
            self._eval(vid, "train")
            st.incumbent_val = self._eval(vid, "val").mean
        exhausted = prop.failure_kind is not None and prop.failure_kind.exhausts_level
        nxt, why = self.policy.after_decision(level, decision, exhausted, cluster, att)
        if nxt is None:
            st.levels_exhausted = why
            return None, level
        if nxt.level != level.level:
            self._notify(obs.LevelChanged(level=nxt.level, why=why))
        return None, nxt

    def _finish(self, stop: rec.Stop) -> rec.OptimizeResult:
        st = self.st
        made = rec.StopRecord(reason=stop.message, kind=stop.kind, best=st.incumbent, accepted=st.accepted)  # fmt: skip
        key = stop_key(self.log, made)  # progress: a budget stop resumed with more budget
        record = self._memo("stopped", key, rec.StopRecord, lambda: made)
        ends = list(dict.fromkeys(["v000", st.incumbent]))
        self.meter.max_calls = self.meter.max_tokens = self.meter.max_usd = None
        self.budget.clock_stops = False  # progress: the sealed test split is always evaluated
        test = {vid: self._eval(vid, "test").mean for vid in ends}
        val = {vid: self.summaries[(vid, "val")].mean for vid in ends if (vid, "val") in self.summaries}  # fmt: skip # progress: a budget stop inside the baseline has no val yet
        setup.save_val_attribution(self, ends)
        setup.close_run(self, record, val, test)
        if self.cache is not None:
            self.cache.close()
        self._notify(obs.RunFinished(run_dir=self.dir, stop=record))
        return rec.OptimizeResult(run_dir=self.dir, status="finished", stop=record, best=st.incumbent, val=val, test=test)  # fmt: skip


def run(tenant: Tenant | str | Path, options: RunOptions, settings: Settings | None = None, **kwargs: Any) -> rec.OptimizeResult:  # fmt: skip
    """Library entry point of `fapo run` (see `fapo.optimize` for the typed public one)."""
    if not isinstance(tenant, Tenant):
        tenant = load_tenant(tenant, settings, options.models)  # localllm: --model
    elif settings is not None and settings is not tenant.settings:
        tenant = replace(tenant, settings=settings)
    return Run(tenant, options, **kwargs).execute()

"""`fapo run`: the optimization loop as a state machine whose every stage is recorded.

    baseline (train + val) → [attribute → escalate? → propose → review → compare → decide]* →
    sealed test (baseline + final) → report

Stages live in their own modules (attribute, workspace, review, compare, escalate, budget); this
module only sequences them. Every finished stage is an event in events.jsonl; on `--resume` the
loop re-walks the same logic and `EventLog.memo` returns what was already done, so a killed run
resumes without redoing finished evaluations or proposals and reaches the same decisions.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fapo import __version__
from fapo.agents.base import Agent, AttributionRequest, Brief, Cluster, ReviewRequest
from fapo.artifacts import read_files, read_json, write_files, write_json, write_text
from fapo.attribute import attribute, traces_for
from fapo.budget import Budget
from fapo.cache import CallCache
from fapo.compare import AcceptanceRule, PairedImprovement
from fapo.errors import BudgetExhausted, FapoError
from fapo.escalate import EscalationPolicy, LadderPolicy, LevelState
from fapo.evaluate import EvalSummary, evaluate
from fapo.events import EventLog
from fapo.llm import Meter
from fapo.review import LeakIndex, review_in_code
from fapo.settings import Settings
from fapo.spec import BudgetSpec
from fapo.tenant import Tenant, load_tenant
from fapo.workspace import allowed_files, collect, context_listing, prepare, snapshot, unified_diff

RULES = [
    "Change only the files listed above; everything else is read-only and checked by hash.",
    "One proposal = one scoped change. Do not touch the scorer, checks, data or tenant.yaml.",
    "Never copy validation or test text into a file; you only see train evidence.",
    "Keep every {placeholder} a prompt already uses; the chain supplies exactly those.",
    "Parameters must stay inside their declared bounds.",
]


@dataclass(frozen=True)
class RunOptions:
    agent: str | None = None
    run_id: str | None = None
    resume: bool = False
    budget: dict[str, Any] = field(default_factory=dict)  # overrides of tenant.yaml budget
    concurrency: int | None = None
    use_cache: bool = True
    seed: int | None = None
    agent_settings: dict[str, Any] = field(default_factory=dict)  # CLI overrides (model, …)


@dataclass
class RunResult:
    run_dir: Path
    status: str
    stop_reason: str
    best: str
    val: dict[str, float]
    test: dict[str, float]
    accepted: list[str]


def make_agent(kind: str, run: Run) -> Agent:
    """The agent named on the command line / in settings, wired to this run."""
    if kind == "builtin":
        from fapo.agents.builtin import BuiltinAgent

        return BuiltinAgent(train_score=run.train_score, functions=run.functions())
    if kind.startswith("scripted:"):
        from fapo.agents.scripted import ScriptedAgent

        return ScriptedAgent.from_file(Path(kind.split(":", 1)[1]), run.tenant.root)
    if kind in ("claude-code", "codex"):
        from fapo.agents.cli_runner import merged_settings

        settings = merged_settings(
            run.settings.agent(kind),
            run.tenant.spec.agent,
            {k: v for k, v in run.options.agent_settings.items() if v is not None},
        )
        if kind == "claude-code":
            from fapo.agents.claude_code import ClaudeCodeAgent as Cls
        else:
            from fapo.agents.codex import CodexAgent as Cls
        return Cls(settings, project_root=run.settings.root, prices=run.settings.prices)
    raise FapoError(f"unknown agent '{kind}'; use builtin, claude-code, codex or scripted:FILE")


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
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.tenant, self.options, self.settings = tenant, options, tenant.settings
        spec = tenant.spec
        self.run_id = options.run_id or time.strftime("%Y%m%d-%H%M%S")
        self.dir = self.settings.runs_dir / tenant.name / self.run_id
        if options.resume and not (self.dir / "run.json").is_file():
            raise FapoError(f"no run '{self.run_id}' under {self.dir.parent}; see `fapo status`")
        if not options.resume and (self.dir / "run.json").is_file():
            raise FapoError(f"run folder {self.dir} already exists; use --resume {self.run_id}")
        budget_spec = BudgetSpec(
            **{
                **spec.budget.model_dump(),
                **{k: v for k, v in options.budget.items() if v is not None},
            }
        )
        self.meter = Meter(budget_spec.max_calls, budget_spec.max_tokens, budget_spec.max_usd)
        self.budget = Budget(budget_spec, self.meter, started=time.time())
        self.seed = spec.seed if options.seed is None else options.seed
        self.acceptance = acceptance or PairedImprovement(spec.acceptance, seed=self.seed)
        self.policy = escalation or LadderPolicy(tuple(spec.levels()), spec.escalation)
        self.agent_kind = options.agent or (
            spec.agent.kind if spec.agent and spec.agent.kind else self.settings.defaults.agent
        )
        self._agent = agent
        self.on_event = on_event or (lambda kind, data: None)
        self.cache = CallCache(self.settings.cache_path) if options.use_cache else None
        self.log: EventLog | None = None
        self.variants: dict[str, Tenant] = {}
        self.summaries: dict[tuple[str, str], EvalSummary] = {}
        self._functions: dict[str, Any] | None = None

    # -- helpers -----------------------------------------------------------------------------
    @property
    def agent(self) -> Agent:
        if self._agent is None:
            self._agent = make_agent(self.agent_kind, self)
        return self._agent

    def vdir(self, vid: str) -> Path:
        return self.dir / "variants" / vid

    def _budget(self) -> dict[str, Any]:
        return self.budget.snapshot(time.time())

    def _emit(self, kind: str, **data: Any) -> None:
        self.on_event(kind, {**data, "budget": self._budget()})

    def functions(self) -> dict[str, Any]:
        """Functions the tenant's chain registers (for structural transforms)."""
        if self._functions is None:
            from fapo.validate import null_factory

            _, ctx = self.tenant.build(null_factory(dict(self.tenant.spec.models)))
            self._functions = dict(ctx.functions)
        return self._functions

    def _eval(self, vid: str, split: str, *, repeats: int | None = None) -> EvalSummary:
        """Evaluate a variant on a split once per run (memoized by the event log)."""
        key = f"{vid}/{split}"
        out = self.vdir(vid) / "eval" / split
        reps = repeats or self.tenant.spec.acceptance.repeats

        def run() -> dict[str, Any]:
            self._emit("eval_start", variant=vid, split=split)
            s = evaluate(
                self.variants[vid],
                split,
                out_dir=out,
                cache=self.cache,
                use_cache=self.cache is not None,
                repeats=reps,
                concurrency=self.options.concurrency,
                meter=self.meter,
            )
            return {"mean": s.mean, "n": s.n, "calls": s.calls, "errors": s.errors}

        _, replayed = self.log.memo("eval", key, run, self._budget)  # type: ignore[union-attr]
        summary = EvalSummary.load(out / "summary.json")
        if (vid, split) not in self.summaries:
            self._emit("eval_done", variant=vid, split=split, mean=summary.mean, replayed=replayed)
        self.summaries[(vid, split)] = summary
        return summary

    def train_score(self, changes: dict[str, str | None], repeats: int = 1) -> float:
        """For the built-in agent: mean train score of incumbent+changes (train only, metered);
        `repeats` > 1 for steps that sample (every move then shares the same repeat draws)."""
        variant = self.variants[self.incumbent].variant(changes)
        return evaluate(
            variant,
            "train",
            repeats=repeats,
            cache=self.cache,
            use_cache=self.cache is not None,
            concurrency=self.options.concurrency,
            meter=self.meter,
        ).mean

    # -- stages ------------------------------------------------------------------------------
    def _start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = EventLog(self.dir / "events.jsonl")
        immutable = self.tenant.immutable_hashes()
        if self.options.resume:
            info = read_json(self.dir / "run.json")
            if info["immutable"] != immutable:
                changed = sorted(
                    k
                    for k in set(info["immutable"]) | set(immutable)
                    if info["immutable"].get(k) != immutable.get(k)
                )
                raise FapoError(
                    f"tenant files changed since the run started ({', '.join(changed[:3])}); "
                    "restore them or start a new run"
                )
            snap = self.log.last_budget()
            if snap:
                self.budget.restore(snap)
                self.budget.variants = 0  # recounted while replaying
        else:
            write_json(
                self.dir / "run.json",
                {
                    "run_id": self.run_id,
                    "tenant": self.tenant.name,
                    "root": str(self.tenant.root),
                    "status": "running",
                    "started": time.time(),
                    "agent": self.agent_kind,
                    "spec": self.tenant.spec.model_dump(),
                    "budget": self.budget.spec.model_dump(),
                    "options": {
                        "concurrency": self.options.concurrency,
                        "use_cache": self.options.use_cache,
                        "seed": self.seed,
                    },
                    "versions": {"fapo": __version__, "python": platform.python_version()},
                    "immutable": immutable,
                },
            )
        self.immutable = immutable
        self.leaks = LeakIndex(self.tenant)
        base_files = read_files(self.vdir("v000") / "files")
        if base_files is None:
            write_files(self.vdir("v000") / "files", dict(self.tenant.files))
            base_files = dict(self.tenant.files)
        self.variants["v000"] = replace(self.tenant, files=base_files)

    def _attribute(self, vid: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            results = self.vdir(vid) / "eval" / "train" / "results.jsonl"
            report = attribute(  # attribution branch: interventions, under their own cap
                self.variants[vid], results, interventions=self._interventions(vid)
            )
            unexplained = [c for c in report["clusters"] if c["cause"] == "unexplained"]
            if unexplained:
                ids = [i for c in unexplained for i in c["example_ids"]]
                req = AttributionRequest(
                    tenant=self.tenant.name,
                    steps=list(self.summaries[(vid, "train")].steps),
                    levels=self.tenant.spec.levels(),  # type: ignore[arg-type]
                    failures=traces_for(results, ids, limit=12),
                )
                with tempfile.TemporaryDirectory(prefix="fapo-attr-") as tmp:
                    ws = Path(tmp) / "workspace"
                    ws.mkdir()
                    (ws / "failures.json").write_text(
                        json.dumps(req.failures, indent=2, default=str)
                    )
                    ans = self.agent.attribute(req, ws)
                    self._copy_transcripts(Path(tmp), self.vdir(vid) / "attribution-agent")
                self.budget.agent_usd += sum(i.usage.usd for i in ans.invocations)
                report["agent"] = {
                    "clusters": [c.model_dump() for c in ans.clusters],
                    "failure": ans.failure,
                    "invocations": [i.model_dump() for i in ans.invocations],
                }
                if ans.clusters:
                    report["clusters"] = [
                        c for c in report["clusters"] if c["cause"] != "unexplained"
                    ]
                    report["clusters"] += [c.model_dump() for c in ans.clusters]
                    report["clusters"].sort(
                        key=lambda c: (-len(c["example_ids"]), -c["confidence"])
                    )
            write_json(self.vdir(vid) / "attribution.json", report)
            return report

        data, _ = self.log.memo("attribution", vid, run, self._budget)  # type: ignore[union-attr]
        return data

    def _interventions(self, vid: str) -> Any:
        """attribution branch: a runner over the run's call cache with what is left of the
        per-run intervention cap (spend of earlier attributions is read from the event log)."""
        spec = self.tenant.spec.interventions
        if not spec.enabled:
            return None
        from fapo.interventions import InterventionRunner

        spent = sum(
            (e["data"].get("interventions") or {}).get("calls", 0)
            for e in self.log.events  # type: ignore[union-attr]
            if e["kind"] == "attribution"
        )
        return InterventionRunner(
            self.variants[vid],
            cache=self.cache,
            max_calls=max(spec.max_calls - spent, 0),
            concurrency=self.options.concurrency or self.settings.defaults.concurrency,
        )

    @staticmethod
    def _copy_transcripts(src: Path, dest: Path) -> None:
        for p in src.glob("*.jsonl"):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dest / p.name)

    def _propose(
        self, vid: str, level: str, cluster: dict[str, Any] | None, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        inc = self.variants[self.incumbent]
        train_results = self.vdir(self.incumbent) / "eval" / "train" / "results.jsonl"
        traces = traces_for(train_results, cluster["example_ids"]) if cluster else []
        brief = Brief(
            tenant=self.tenant.name,
            level=level,  # type: ignore[arg-type]
            objective=(
                f"Raise the mean score of the pipeline (scorer: {self.tenant.spec.scorer}) "
                f"by fixing the failure cluster below with one {level}-level change."
            ),
            scores={
                "train": self.summaries[(self.incumbent, "train")].mean,
                "val": self.summaries[(self.incumbent, "val")].mean,
            },
            cluster=Cluster(**cluster) if cluster else None,
            traces=traces,
            allowed_files=allowed_files(inc, level),
            param_bounds={k: v.model_dump() for k, v in self.tenant.spec.params.items()}
            if level == "parameter"
            else {},
            history=history,
            rules=RULES,
        )
        extra = {"traces.json": json.dumps(traces, indent=2, default=str)}
        if level == "structure":
            extra["functions.md"] = context_listing(self.functions())
        pdir = self.vdir(vid) / "proposal"
        with tempfile.TemporaryDirectory(prefix="fapo-ws-") as tmp:
            ws = Path(tmp) / "workspace"
            prepare(ws, inc, level, brief, extra)
            before = snapshot(ws)
            started = time.time()
            proposal = self.agent.propose(brief, ws)
            changes, stray = collect(ws, before, inc)
            from fapo.agents.cli_runner import detect_outside_writes

            outside = detect_outside_writes(
                [self.tenant.root, self.dir], started, ws, exclude=[self.settings.cache_path.parent]
            )
            self._copy_transcripts(Path(tmp), pdir)
        write_text(pdir / "brief.md", brief.to_markdown())
        write_json(pdir / "proposal.json", proposal.model_dump())
        usd = sum(i.usage.usd for i in proposal.invocations)
        self.budget.agent_usd += usd
        if changes:
            new_files = {k: v for k, v in {**inc.files, **changes}.items() if v is not None}
            write_files(self.vdir(vid) / "files", new_files)
            write_text(self.vdir(vid) / "diff.patch", unified_diff(dict(inc.files), new_files))
        return {
            "variant": vid,
            "parent": self.incumbent,
            "level": level,
            "cluster": cluster,
            "changes": sorted(changes),
            "deleted": sorted(k for k, v in changes.items() if v is None),
            "stray": stray,
            "outside": outside,
            "rationale": proposal.rationale,
            "failure": proposal.failure,
            "agent_usd": usd,
        }

    def _review(self, vid: str, prop: dict[str, Any]) -> dict[str, Any]:
        inc = self.variants[prop["parent"]]
        files = read_files(self.vdir(vid) / "files") or dict(inc.files)
        changes: dict[str, str | None] = {r: files.get(r) for r in prop["changes"]}
        known = {self.variants[v].fingerprint(): v for v in self.variants}
        checks = review_in_code(
            inc,
            changes,
            level=prop["level"],
            stray=prop["stray"],
            outside=prop["outside"],
            immutable_before=self.immutable,
            leak_index=self.leaks,
            known=known,
        )
        blocked = [c for c in checks if not c.passed]
        verdict = None
        if not blocked:
            diff = (self.vdir(vid) / "diff.patch").read_text(encoding="utf-8")
            req = ReviewRequest(
                tenant=self.tenant.name,
                level=prop["level"],
                diff=diff,
                scope_rules=RULES,
                rationale=prop["rationale"],
            )
            with tempfile.TemporaryDirectory(prefix="fapo-review-") as tmp:
                ws = Path(tmp) / "workspace"
                prepare(
                    ws,
                    inc.variant(changes),
                    prop["level"],
                    Brief(
                        tenant=self.tenant.name,
                        level=prop["level"],
                        objective="Review the diff.",
                        scores={},
                        cluster=None,
                        traces=[],
                        allowed_files=[],
                    ),
                    {"diff.patch": diff},
                )
                before = snapshot(ws)
                v = self.agent.review(req, ws)
                touched = sorted(set(snapshot(ws).items()) ^ set(before.items()))
                self._copy_transcripts(Path(tmp), self.vdir(vid) / "review-agent")
            self.budget.agent_usd += sum(i.usage.usd for i in v.invocations)
            verdict = {
                "approve": v.approve and not v.failure and not touched,
                "reasons": v.reasons
                + ([f"reviewer failed: {v.failure}"] if v.failure else [])
                + (["the read-only reviewer modified its workspace"] if touched else []),
                "invocations": [i.model_dump() for i in v.invocations],
            }
        review = {
            "blocked": bool(blocked) or (verdict is not None and not verdict["approve"]),
            "checks": [c.as_dict() for c in checks],
            "agent_verdict": verdict,
        }
        write_json(self.vdir(vid) / "review.json", review)
        return review

    def _decide(self, vid: str) -> dict[str, Any]:
        cand = self._eval(vid, "val")
        inc = self.summaries[(self.incumbent, "val")]
        d = self.acceptance.decide(cand.scores, inc.scores)
        return {
            "variant": vid,
            "incumbent": self.incumbent,
            "status": "accepted" if d.accepted else "rejected",
            "reason": d.reason,
            "stats": d.stats,
            "candidate_val": cand.mean,
            "incumbent_val": inc.mean,
        }

    # -- the loop ----------------------------------------------------------------------------
    def execute(self) -> RunResult:
        self._start()
        model = self.tenant.spec.models["task"]
        self._emit(
            "start",
            run_dir=str(self.dir),
            tenant=self.tenant.name,
            agent=self.agent_kind,
            model=model
            + (" (offline simulated model, not an LLM)" if model.startswith("sim:") else ""),
        )
        log = self.log
        assert log is not None
        self.incumbent = "v000"
        stop = ""
        accepted: list[str] = []
        try:
            self._eval("v000", "train")
            self._eval("v000", "val")
            levels = self.tenant.spec.levels()
            state = LevelState(levels[0])
            history: list[dict[str, Any]] = []
            n = 0
            while True:
                vid = f"v{n + 1:03d}"
                fresh = log.find("proposal", vid) is None
                target = self.tenant.spec.target_score
                if target is not None and self.summaries[(self.incumbent, "val")].mean >= target:
                    stop = f"target score {target} reached on val"
                    break
                reason = self.budget.exhausted(time.time()) if fresh else None
                if reason:
                    stop = reason
                    break
                attribution = self._attribute(self.incumbent)
                clusters = attribution["clusters"]
                if not clusters:
                    stop = "no failures left on train"
                    break
                # attribution branch: escalation weighs every cluster, picks the one to work on
                new_state, why = self.policy.before_proposal(state, clusters)
                if why:
                    log.memo(
                        "level",
                        vid,
                        lambda s=new_state, w=why: {"from": state.level, "to": s.level, "why": w},
                    )
                    self._emit("level", level=new_state.level, why=why)
                state = new_state
                cluster = self.policy.choose(state, clusters) or clusters[0]
                self._emit("propose", variant=vid, level=state.level, cause=cluster["cause"])
                prop, _ = log.memo(
                    "proposal",
                    vid,
                    lambda: self._propose(vid, state.level, cluster, history),
                    self._budget,
                )
                n += 1
                self.budget.variants = n
                entry = {
                    "variant": vid,
                    "level": state.level,
                    "rationale": prop["rationale"],
                    "cluster": f"{cluster['step']}: {cluster['cause']}",
                }
                if prop["failure"]:
                    blocked = "outside the workspace" in prop["failure"]
                    decision = {
                        "variant": vid,
                        "status": "invalid",
                        "reason": ("blocked: " if blocked else "agent produced no proposal: ")
                        + prop["failure"],
                    }
                    exhausted = prop["failure"].startswith(
                        ("nothing left", "no ", "script exhausted")
                    )
                else:
                    review, _ = log.memo(
                        "review", vid, lambda: self._review(vid, prop), self._budget
                    )
                    if review["blocked"]:
                        reasons = [c["reason"] for c in review["checks"] if not c["passed"]]
                        if review["agent_verdict"] and not review["agent_verdict"]["approve"]:
                            reasons += review["agent_verdict"]["reasons"]
                        decision = {
                            "variant": vid,
                            "status": "invalid",
                            "reason": "blocked by review: " + "; ".join(reasons),
                        }
                    else:
                        self.variants[vid] = self.variants[self.incumbent].variant(
                            {
                                r: (read_files(self.vdir(vid) / "files") or {}).get(r)
                                for r in prop["changes"]
                            }
                        )
                        decision, _ = log.memo(
                            "decision", vid, lambda: self._decide(vid), self._budget
                        )
                    exhausted = False
                write_json(self.vdir(vid) / "decision.json", decision)
                self._emit("decision", **decision)
                ok = decision["status"] == "accepted"
                entry.update(outcome=decision["status"], reason=decision["reason"])
                history.append(entry)
                if ok:
                    self.incumbent = vid
                    accepted.append(vid)
                    self._eval(vid, "train")
                    self._eval(vid, "val")
                nxt, why = self.policy.after_decision(state, ok, exhausted, cluster, clusters)
                if nxt is None:
                    stop = why
                    break
                if nxt.level != state.level:
                    self._emit("level", level=nxt.level, why=why)
                state = nxt
        except BudgetExhausted as exc:
            stop = exc.reason
        return self._finish(stop, accepted)

    def _finish(self, stop: str, accepted: list[str]) -> RunResult:
        log = self.log
        assert log is not None
        log.memo(
            "stopped",
            "run",
            lambda: {"reason": stop, "best": self.incumbent, "accepted": accepted},
            self._budget,
        )
        test: dict[str, float] = {}
        for vid in dict.fromkeys(["v000", self.incumbent]):
            try:
                self.meter.max_calls = self.meter.max_tokens = self.meter.max_usd = None
                test[vid] = self._eval(vid, "test").mean
            except BudgetExhausted:  # pragma: no cover - limits lifted above
                pass
        val = {v: self.summaries[(v, "val")].mean for v in dict.fromkeys(["v000", self.incumbent])}
        info = read_json(self.dir / "run.json")
        info.update(
            status="finished",
            stop_reason=stop,
            best=self.incumbent,
            accepted=accepted,
            val=val,
            test=test,
            spent=self._budget(),
            finished=time.time(),
        )
        write_json(self.dir / "run.json", info)
        from fapo.report_html import write_html

        write_html(self.dir)
        if self.cache is not None:
            self.cache.close()
        self._emit("finished", stop=stop, best=self.incumbent)
        return RunResult(self.dir, "finished", stop, self.incumbent, val, test, accepted)


def run(
    tenant: str | Path, options: RunOptions, settings: Settings | None = None, **kwargs: Any
) -> RunResult:
    """Library entry point of `fapo run`."""
    return Run(load_tenant(tenant, settings), options, **kwargs).execute()

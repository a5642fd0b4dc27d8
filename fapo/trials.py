"""`--trials N`: N independent runs of the loop with different seeds, summarized as mean ± sd.

A thin layer over `fapo.loop.run`: trial i is the run `<id>-t<i>` with seed `seed + i - 1`, used for
the statistics and as the task model's sampling seed (`fapo.runtime.MODEL_SEED`). Each
trial gets its own call cache unless told otherwise, because a shared cache would replay trial 1's
model outputs in every later trial and make the trials copies rather than independent samples.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fapo.artifacts import write_json, write_text
from fapo.errors import FapoError
from fapo.observers import Callback, TrialStarted
from fapo.runtime import MODEL_SEED
from fapo.settings import Settings


@dataclass
class TrialsResult:
    tenant: str
    base_id: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    path: Path | None = None
    identical_because: str = ""  # set when every trial gave the same numbers

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "base_id": self.base_id,
            "trials": len(self.runs),
            "runs": self.runs,
            "stats": self.stats,
            "identical_because": self.identical_because or None,
            "summary": str(self.path or ""),
        }

    def text(self) -> str:
        lines = [f"{self.tenant}: {len(self.runs)} trials ({self.base_id}-t1 … -t{len(self.runs)})"]
        for key, label in (
            ("val_final", "final val"),
            ("test_final", "final test"),
            ("val_baseline", "baseline val"),
            ("test_baseline", "baseline test"),
            ("gain_test", "test gain"),
            ("accepted", "accepted changes"),
        ):
            s = self.stats.get(key)
            if s:
                lines.append(
                    f"  {label:16} {s['mean']:.3f} ± {s['sd']:.3f}  "
                    f"(min {s['min']:.3f}, max {s['max']:.3f})"
                )
        if self.identical_because:
            lines.append(f"  every trial gave the same numbers: {self.identical_because}")
        lines.append(f"summary: {self.path}")
        return "\n".join(lines)


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n-1), as papers report them."""
    if not values:
        return {}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": statistics.fmean(values),
        "sd": sd,
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "sem": sd / math.sqrt(len(values)),
    }


def _trial_settings(settings: Settings, run_id: str) -> Settings:
    cache = settings.cache_path.parent / "trials" / f"{run_id}.sqlite"
    return settings.model_copy(
        update={"paths": settings.paths.model_copy(update={"cache": str(cache)})}
    )


def _trial_models(
    tenant: str | Path, options: Any, settings: Settings, base_id: str
) -> dict[str, str]:
    """`--model` overrides, else on `--resume` those trial 1 was started with (run.json), so a
    resumed series never switches model half-way."""
    from fapo.run_setup import resumed_models

    return resumed_models(tenant, replace(options, run_id=f"{base_id}-t1"), settings)


def run_trials(
    tenant: str | Path,
    options: Any,
    n: int,
    settings: Settings,
    *,
    shared_cache: bool = False,
    on_event: Callback | None = None,
    run: Callable[..., Any] | None = None,
) -> TrialsResult:
    """Run trial 1..n (resuming those that exist when `options.resume`) and write the summary."""
    from fapo.loop import run as loop_run
    from fapo.tenant import load_tenant

    if n < 1:
        raise FapoError(f"--trials {n}: use a positive number of runs")
    run = run or loop_run
    base_id = options.run_id or time.strftime("%Y%m%d-%H%M%S")
    t = load_tenant(tenant, settings, _trial_models(tenant, options, settings, base_id))
    seed0 = t.spec.seed if options.seed is None else options.seed
    out = TrialsResult(t.name, base_id)
    for i in range(1, n + 1):
        rid = f"{base_id}-t{i}"
        exists = (settings.runs_dir / t.name / rid / "run.json").is_file()
        if exists and not options.resume:
            raise FapoError(
                f"trial run {rid} already exists under {settings.runs_dir / t.name}; "
                f"pass --resume with --run-id {base_id}, or choose another --run-id"
            )
        opts = replace(options, run_id=rid, seed=seed0 + i - 1, resume=exists)
        s = settings if shared_cache else _trial_settings(settings, rid)
        if on_event:
            on_event(TrialStarted(trial=i, of=n, run_id=rid))
        # The model's sampling seed moves with the trial (trial 1 samples like a plain run);
        # otherwise a noisy simulator would repeat trial 1's noise in every trial.
        token = MODEL_SEED.set(seed0 + i - 1)
        try:
            # The loaded tenant itself, so a trial does not load (and validate) it again.
            r = run(t, opts, s, callbacks=[on_event]) if on_event else run(t, opts, s)
        finally:
            MODEL_SEED.reset(token)
        out.runs.append(
            {
                "trial": i,
                "run_id": rid,
                "seed": seed0 + i - 1,
                "model_seed": seed0 + i - 1,
                "run_dir": str(r.run_dir),
                "best": r.best,
                "stop_reason": r.stop_reason,
                "accepted": len(r.accepted),
                "val_baseline": r.val.get("v000"),
                "val_final": r.val.get(r.best),
                "test_baseline": r.test.get("v000"),
                "test_final": r.test.get(r.best),
            }
        )
    for key in ("val_final", "test_final", "val_baseline", "test_baseline", "accepted"):
        vals = [float(r[key]) for r in out.runs if r.get(key) is not None]
        out.stats[key] = mean_sd(vals)
    gains = [
        r["test_final"] - r["test_baseline"]
        for r in out.runs
        if r.get("test_final") is not None and r.get("test_baseline") is not None
    ]
    out.stats["gain_test"] = mean_sd(gains)
    out.stats = {k: v for k, v in out.stats.items() if v}
    if len(out.runs) > 1 and out.stats and all(v["sd"] == 0 for v in out.stats.values()):
        out.identical_because = why_identical(out.runs, shared_cache)
    out.path = settings.runs_dir / t.name / f"{base_id}-trials.json"
    write_json(out.path, {**out.as_dict(), "shared_cache": shared_cache, "created": time.time()})
    write_text(out.path.with_suffix(".md"), _markdown(out))
    return out


def _calls_of(run_dir: Path) -> list[dict[str, Any]]:
    """Every model call recorded by a run's evaluations (model spec and call settings)."""
    import json

    calls = []
    for path in sorted(run_dir.glob("variants/*/eval/*/results.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                for step in json.loads(line).get("steps", []):
                    calls.extend(step.get("calls", []))
    return calls


def why_identical(runs: list[dict[str, Any]], shared_cache: bool) -> str:
    """Why N trials gave the same numbers, from what they recorded (one sentence, no guess)."""
    from fapo.artifacts import read_json

    if shared_cache:
        return (
            "the trials shared one call cache (--shared-cache), so later trials replayed the "
            "model answers of the first; drop --shared-cache for independent trials"
        )
    run_dir = Path(runs[0]["run_dir"])
    agent = str(read_json(run_dir / "run.json").get("agent", "")) if run_dir.is_dir() else ""
    calls = _calls_of(run_dir)
    models = sorted({str(c.get("model")) for c in calls})
    hot = [c for c in calls if float((c.get("settings") or {}).get("temperature") or 0) > 0]
    agent_note = (
        f" and the {agent} agent is deterministic"
        if agent == "builtin" or agent.startswith("scripted:")
        else f" and the {agent} agent proposed the same changes"
        if agent
        else ""
    )
    seeds = ", ".join(str(r.get("model_seed", r.get("seed"))) for r in runs)
    if calls and all(m.startswith("sim:") for m in models) and not hot:
        return (
            f"every model call ran on the simulator at temperature 0, which is deterministic"
            f"{agent_note}; the model seed (trials used {seeds}) only varies its answers at "
            "temperature > 0, so identical trials are expected here"
        )
    if hot and all(m.startswith("sim:") for m in models):
        return (
            f"the simulator sampled with a different seed per trial ({seeds}) and {len(hot)} of "
            f"{len(calls)} calls in trial 1 ran at temperature > 0, but its noise changed no "
            f"score or decision{agent_note}; more examples or a higher temperature would show it"
        )
    return (
        f"the task model ({', '.join(models) or 'no calls recorded'}) answered alike in every "
        f"trial ({len(hot)} of {len(calls)} calls in trial 1 at temperature > 0){agent_note}; "
        "each trial had its own call cache, so this is the model's behaviour, not a replay"
    )


def _markdown(res: TrialsResult) -> str:
    L = [
        f"# {res.tenant}: {len(res.runs)} trials of `fapo run` ({res.base_id})",
        "",
        "| trial | run | seed | accepted | val baseline | val final | test baseline | test final |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x: Any) -> str:
        return "—" if x is None else f"{x:.3f}"

    for r in res.runs:
        L.append(
            f"| {r['trial']} | {r['run_id']} | {r['seed']} | {r['accepted']} | "
            f"{f(r['val_baseline'])} | {f(r['val_final'])} | {f(r['test_baseline'])} | "
            f"{f(r['test_final'])} |"
        )
    L += ["", "| metric | mean ± sd | min | max |", "|---|---|---:|---:|"]
    for k, s in res.stats.items():
        L.append(f"| {k} | {s['mean']:.3f} ± {s['sd']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    L += ["", "sd is the sample standard deviation (n-1) over trials."]
    if res.identical_because:
        L += ["", f"Every trial gave the same numbers: {res.identical_because}."]
    return "\n".join(L) + "\n"

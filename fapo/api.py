"""The typed Python API: `fapo.optimize` (what `fapo run` does) and `fapo.evaluate`.

Both accept a tenant folder (path or name under the project's tenants folder) or a loaded
`Tenant`. With `settings` given nothing is read from the working directory; without, `fapo.toml`
is looked for upwards from the tenant folder (then from the working directory).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fapo.records import OptimizeResult
from fapo.settings import Settings, load_settings

if TYPE_CHECKING:
    from fapo.agents.base import Agent
    from fapo.compare import AcceptanceRule
    from fapo.escalate import EscalationPolicy
    from fapo.evaluate import EvalSummary
    from fapo.observers import Callback
    from fapo.stop import StopCondition
    from fapo.tenant import Tenant


def load(tenant: Tenant | str | Path, settings: Settings | None = None) -> Tenant:
    """A loaded tenant, with `settings` (if given) replacing the ones it was loaded with."""
    from fapo.tenant import Tenant, load_tenant

    if isinstance(tenant, Tenant):
        return tenant if settings is None else replace(tenant, settings=settings)
    if settings is None:
        folder = Path(tenant)
        settings = load_settings(folder if folder.is_dir() else None)
    return load_tenant(tenant, settings)


def optimize(
    tenant: Tenant | str | Path,
    *,
    agent: Agent | str | None = None,
    acceptance: AcceptanceRule | None = None,
    escalation: EscalationPolicy | None = None,
    stop: Sequence[StopCondition] = (),
    callbacks: Sequence[Callback] = (),
    settings: Settings | None = None,
    run_id: str | None = None,
    resume: bool = False,
    budget: Mapping[str, Any] | None = None,
    seed: int | None = None,
    concurrency: int | None = None,
    use_cache: bool = True,
    report: bool = True,
) -> OptimizeResult:
    """Run the optimization loop on `tenant` and return the best variant with its scores.

    `agent` is an `Agent` object or a name (builtin, claude-code, codex, scripted:FILE);
    `acceptance` and `escalation` replace the tenant's rule and ladder; `stop` conditions are
    asked along with the built-in ones (levels exhausted, target, budget, no failures);
    `callbacks` receive typed events (`fapo.observers`); `budget` overrides tenant.yaml's budget
    keys (max_variants, max_calls, max_tokens, max_usd, max_minutes); `report=False` skips the
    report files."""
    from fapo.loop import Run
    from fapo.run_setup import RunOptions

    options = RunOptions(
        agent=agent if isinstance(agent, str) else None,
        run_id=run_id,
        resume=resume,
        budget=dict(budget or {}),
        concurrency=concurrency,
        use_cache=use_cache,
        seed=seed,
    )
    return Run(
        load(tenant, settings),
        options,
        agent=None if agent is None or isinstance(agent, str) else agent,
        acceptance=acceptance,
        escalation=escalation,
        stop=stop,
        callbacks=callbacks,
        report=report,
    ).execute()


def evaluate(
    tenant: Tenant | str | Path,
    split: str,
    *,
    settings: Settings | None = None,
    out_dir: Path | None = None,
    repeats: int = 1,
    limit: int | None = None,
    concurrency: int | None = None,
    use_cache: bool = True,
) -> EvalSummary:
    """Evaluate the tenant's current files on `split` (train, val or test)."""
    from fapo.cache import CallCache
    from fapo.evaluate import evaluate as run_eval

    t = load(tenant, settings)
    cache = CallCache(t.settings.cache_path) if use_cache else None
    try:
        return run_eval(
            t,
            split,
            out_dir=out_dir,
            repeats=repeats,
            limit=limit,
            concurrency=concurrency,
            cache=cache,
            use_cache=use_cache,
        )
    finally:
        if cache is not None:
            cache.close()

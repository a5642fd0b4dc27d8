"""The tenant contract (`tenant.yaml`), validated fail-closed: unknown keys are errors.

`fapo schema` prints this model's JSON Schema so editors can complete tenant.yaml.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from fapo.records import LEVELS, Level  # noqa: F401  (re-exported: fapo.spec.LEVELS)
from fapo.records import Record as _Strict

#: Tenant names become folder names under runs/: a safe character set, no path separators.
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ParamSpec(_Strict):
    """A tunable value: int/float range, a choice list, or a bool."""

    type: Literal["int", "float", "choice", "bool"]
    min: float | None = None
    max: float | None = None
    choices: list[Any] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpec:
        if self.type in ("int", "float"):
            if self.min is None or self.max is None:
                raise ValueError(f"a {self.type} parameter needs both min and max")
            if self.min > self.max:
                raise ValueError(f"min {self.min} is greater than max {self.max}")
        if self.type == "choice" and not self.choices:
            raise ValueError("a choice parameter needs a non-empty 'choices' list")
        return self

    def check(self, value: Any) -> str | None:
        """None when `value` is allowed, else what is wrong with it."""
        if self.type == "bool":
            return None if isinstance(value, bool) else f"{value!r} is not true/false"
        if self.type == "choice":
            return (
                None if value in (self.choices or []) else f"{value!r} is not one of {self.choices}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        if self.type == "int" and not float(value).is_integer():
            return f"{value!r} is not an integer"
        if not (self.min <= value <= self.max):  # type: ignore[operator]
            return f"{value!r} is outside [{self.min:g}, {self.max:g}]"
        return None


class DataSpec(_Strict):
    train: str = "data/train.jsonl"
    val: str = "data/val.jsonl"
    test: str = "data/test.jsonl"


class StepSpec(_Strict):
    """Optional declarations about a step, used by attribution (declared output format)."""

    output: str | None = Field(None, description="state key this step writes its answer to")
    format: Literal["json", "one_line", "number", "label"] | None = None
    pattern: str | None = Field(None, description="regex the output must fully match")
    max_words: int | None = None


class BudgetSpec(_Strict):
    max_variants: int = Field(12, ge=1, description="candidates proposed (blocked ones count)")
    max_calls: int | None = Field(
        None, ge=1, description="task-model calls issued (cache hits are free)"
    )
    max_tokens: int | None = Field(None, ge=1)
    max_usd: float | None = Field(None, ge=0, description="task model + agent")
    max_minutes: float | None = Field(None, gt=0)


class AcceptanceSpec(_Strict):
    min_improvement: float = Field(0.01, ge=0, le=1, description="mean paired gain required")
    alpha: float = Field(0.05, gt=0, lt=1, description="one-sided significance level")
    test: Literal["permutation", "bootstrap"] = "permutation"
    resamples: int = Field(10000, ge=100)
    repeats: int = Field(1, ge=1, le=20, description="evaluations per example (noisy models)")
    looks: int = Field(
        3, ge=1, le=6, description="sequential looks at val (nested subsets); 1 = all at once"
    )
    spending: Literal["obrien-fleming", "pocock"] = "obrien-fleming"
    futility: float = Field(
        0.0, ge=-1, le=1, description="stop a candidate at an interim look when its gain <= this"
    )
    run_alpha: float | None = Field(
        0.05,
        gt=0,
        lt=1,
        description="chance a run accepts any no-effect change (null: per decision)",
    )


class EscalationSpec(_Strict):
    patience: int = Field(2, ge=1, description="consecutive rejections before moving up a level")
    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "clusters below it are guesses, not attributions (the ladder's 'unexplained' is 0.3): "
            "their level is worked on after every level with attributed untried failures"
        ),
    )
    high_confidence: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "deprecated, no effect: escalation weighs every cluster of a level together instead "
            "of jumping on one confident cluster; accepted so existing tenant.yaml files validate"
        ),
    )


class InterventionSpec(_Strict):
    """Bounds of attribution's interventions (re-running failing examples with one change)."""

    enabled: bool = True
    max_calls: int = Field(
        2000, ge=0, description="task-model calls interventions may issue per run (cache hits free)"
    )
    sample: int = Field(8, ge=1, le=200, description="failing train examples probed per cluster")
    draws: int = Field(3, ge=1, le=10, description="resamples of a step per probed example")


class AgentOverride(_Strict):
    kind: str | None = None
    model: str | None = None
    max_turns: int | None = None
    timeout_s: float | None = None
    extra_args: list[str] | None = None


class TenantSpec(_Strict):
    name: str = Field(pattern=SAFE_NAME, description="letters, digits, '.', '_', '-' (≤64)")
    description: str = ""
    models: dict[str, str] = Field(description="role -> model spec; 'task' is required")
    data: DataSpec = DataSpec()
    prediction: str = Field(description="state key holding the final prediction")
    scorer: str = "scorer.py"
    checks: str | None = None
    scope: list[Level] = Field(min_length=1)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: dict[str, StepSpec] = Field(default_factory=dict)
    budget: BudgetSpec = BudgetSpec()
    acceptance: AcceptanceSpec = AcceptanceSpec()
    escalation: EscalationSpec = EscalationSpec()
    interventions: InterventionSpec = InterventionSpec()
    target_score: float | None = Field(None, ge=0, le=1)
    agent: AgentOverride | None = None
    concurrency: int | None = Field(None, ge=1)
    seed: int = 0
    benchmark_specific: list[str] = Field(
        default_factory=list,
        description="identifiers of the benchmark's own verifiers (instruction ids, checker "
        "names); a change that names one is flagged in the report as benchmark-specific",
    )

    @model_validator(mode="after")
    def _task_model(self) -> TenantSpec:
        if "task" not in self.models:
            raise ValueError("models must name a 'task' model")
        if len(set(self.scope)) != len(self.scope):
            raise ValueError("scope lists a level twice")
        if ".." in self.name:
            raise ValueError("name may not contain '..'")
        return self

    def levels(self) -> list[Level]:
        """Permitted levels, least invasive first."""
        return [lvl for lvl in LEVELS if lvl in self.scope]

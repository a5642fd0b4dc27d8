"""Acceptance: does a candidate replace the incumbent? Paired, one-sided, on the selection split.

Swap the rule by passing another object with `decide` (an `AcceptanceRule`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from fapo.records import DecisionRecord, Status
from fapo.spec import AcceptanceSpec
from fapo.stats import paired_test

if TYPE_CHECKING:
    from fapo.evaluate import EvalSummary


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str
    stats: dict[str, Any] = field(default_factory=dict)


class AcceptanceRule(Protocol):
    def decide(self, candidate: dict[str, float], incumbent: dict[str, float]) -> Decision: ...


@dataclass(frozen=True)
class PairedImprovement:
    """Accept iff mean paired gain >= min_improvement AND one-sided p < alpha."""

    spec: AcceptanceSpec
    seed: int = 0

    def decide(self, candidate: dict[str, float], incumbent: dict[str, float]) -> Decision:
        # Sorted, so the resampling sees the same order whatever order examples finished in.
        ids = sorted(i for i in incumbent if i in candidate)
        if len(ids) != len(incumbent) or len(ids) != len(candidate):
            return Decision(False, "candidate and incumbent were not scored on the same examples")
        t = paired_test(
            [candidate[i] for i in ids],
            [incumbent[i] for i in ids],
            method=self.spec.test,
            resamples=self.spec.resamples,
            seed=self.seed,
        )
        stats = {
            **t.as_dict(),
            "min_improvement": self.spec.min_improvement,
            "alpha": self.spec.alpha,
            "candidate_mean": sum(candidate[i] for i in ids) / max(len(ids), 1),
            "incumbent_mean": sum(incumbent[i] for i in ids) / max(len(ids), 1),
        }
        if t.mean_diff < self.spec.min_improvement:
            return Decision(
                False,
                f"mean gain {t.mean_diff:+.3f} is below the required "
                f"{self.spec.min_improvement:.3f}",
                stats,
            )
        if t.p_value >= self.spec.alpha:
            return Decision(
                False,
                f"gain {t.mean_diff:+.3f} is not significant "
                f"(p={t.p_value:.4f} >= alpha {self.spec.alpha})",
                stats,
            )
        return Decision(
            True, f"gain {t.mean_diff:+.3f}, p={t.p_value:.4f} < {self.spec.alpha}", stats
        )


def decide(
    rule: AcceptanceRule, variant: str, incumbent: str, cand: EvalSummary, inc: EvalSummary
) -> DecisionRecord:
    """The compare stage: apply `rule` to paired val scores of candidate and incumbent."""
    d = rule.decide(cand.scores, inc.scores)
    return DecisionRecord(
        variant=variant,
        incumbent=incumbent,
        status=Status.ACCEPTED if d.accepted else Status.REJECTED,
        reason=d.reason,
        stats=d.stats,
        candidate_val=cand.mean,
        incumbent_val=inc.mean,
    )

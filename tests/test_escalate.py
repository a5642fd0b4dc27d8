"""Escalation rules of the ladder policy, without running anything."""

from __future__ import annotations

from fapo.escalate import LadderPolicy, LevelState
from fapo.records import Attribution, Cluster, DecisionRecord, Status
from fapo.spec import EscalationSpec

ALL = ("prompt", "parameter", "structure")


def cluster(level: str, conf: float = 0.9, n: int = 10) -> Attribution:
    """An attribution whose dominant cluster is at `level`."""
    c = Cluster(
        step="s", cause="c", level=level, confidence=conf, example_ids=[str(i) for i in range(n)]
    )
    return Attribution(split="train", examples=n, failures=n, clusters=[c])


def decision(accepted: bool) -> DecisionRecord:
    return DecisionRecord(
        variant="v001", status=Status.ACCEPTED if accepted else Status.REJECTED, reason="test"
    )


def policy(levels=ALL, patience=2, high=0.8) -> LadderPolicy:
    return LadderPolicy(levels, EscalationSpec(patience=patience, high_confidence=high))


def test_moves_up_after_patience_consecutive_rejections() -> None:
    p = policy(patience=2)
    s = LevelState("prompt")
    s, why = p.after_decision(s, decision(False))
    assert s.level == "prompt" and s.rejections == 1
    s, why = p.after_decision(s, decision(False))
    assert s.level == "parameter" and s.rejections == 0 and "up to parameter" in why


def test_acceptance_resets_the_rejection_count() -> None:
    p = policy(patience=2)
    s, _ = p.after_decision(LevelState("prompt"), decision(False))
    s, _ = p.after_decision(s, decision(True))
    s, _ = p.after_decision(s, decision(False))
    assert s.level == "prompt" and s.rejections == 1


def test_high_confidence_higher_cluster_escalates_one_level_at_once() -> None:
    p = policy()
    s, why = p.before_proposal(LevelState("prompt"), cluster("structure", 0.9))
    assert s.level == "parameter" and why and "needs the structure level" in why
    # No second jump before a decision at the level in between.
    s2, why2 = p.before_proposal(s, cluster("structure", 0.9))
    assert s2.level == "parameter" and why2 is None
    s3, _ = p.after_decision(s2, decision(True))
    s4, _ = p.before_proposal(s3, cluster("structure", 0.9))
    assert s4.level == "structure"


def test_low_confidence_or_same_level_does_not_escalate() -> None:
    p = policy(high=0.8)
    assert p.before_proposal(LevelState("prompt"), cluster("structure", 0.5))[0].level == "prompt"
    assert p.before_proposal(LevelState("prompt"), cluster("prompt", 1.0))[0].level == "prompt"


def test_structural_acceptance_returns_to_the_lowest_level() -> None:
    s, why = policy().after_decision(LevelState("structure"), decision(True))
    assert s.level == "prompt" and "back to prompt" in why


def test_never_leaves_the_tenant_scope() -> None:
    p = policy(levels=("prompt", "parameter"))
    s, _ = p.before_proposal(LevelState("parameter"), cluster("structure", 1.0))
    assert s.level == "parameter"
    s, why = p.after_decision(LevelState("parameter", 1, ("prompt",)), decision(False))
    assert s is None and "exhausted" in why


def test_exhausted_top_level_falls_back_to_a_skipped_level() -> None:
    p = policy(patience=1)
    s = LevelState("structure", exhausted=("prompt",))
    nxt, why = p.after_decision(s, decision(False), level_exhausted=True)
    assert nxt is not None and nxt.level == "parameter" and "untried" in why
    done, why = p.after_decision(
        LevelState("structure", exhausted=("prompt", "parameter")), decision(False)
    )
    assert done is None

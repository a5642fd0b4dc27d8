"""Escalation rules of the ladder policy, without running anything: evidence weighed per level,
the cheapest level with attributed untried failures first, never leaving such a level."""

from __future__ import annotations

from fapo.escalate import LadderPolicy, LevelState, weigh
from fapo.records import Attribution, Cluster, DecisionRecord, Status
from fapo.spec import EscalationSpec

ALL = ("prompt", "parameter", "structure")


def cluster(
    level: str, conf: float = 0.9, n: int = 10, step: str = "s", cause: str = "c"
) -> Cluster:
    return Cluster(
        step=step,
        cause=f"{cause}-{level}",
        level=level,
        confidence=conf,
        example_ids=[f"{step}{cause}{i}" for i in range(n)],
    )


def att(clusters: list[Cluster]) -> Attribution:
    n = sum(len(c.example_ids) for c in clusters)
    return Attribution(split="train", examples=n, failures=n, clusters=clusters)


def decision(accepted: bool) -> DecisionRecord:
    return DecisionRecord(
        variant="v001", status=Status.ACCEPTED if accepted else Status.REJECTED, reason="test"
    )


def policy(levels=ALL, patience=2, high=0.8) -> LadderPolicy:
    return LadderPolicy(levels, EscalationSpec(patience=patience, high_confidence=high))


def test_weigh_adds_every_cluster_of_a_level() -> None:
    ev = weigh(
        [
            cluster("prompt", 1.0, 8),
            cluster("prompt", 0.5, 7, cause="x"),
            cluster("structure", 1.0, 12),
        ],
        40,
    )
    assert ev["prompt"].failures == 15 and ev["prompt"].clusters == 2
    assert abs(ev["prompt"].gap - (8 + 3.5) / 40) < 1e-9
    assert ev["structure"].failures == 12


def test_split_prompt_clusters_are_not_outweighed_by_one_big_structure_cluster() -> None:
    """The measured failure: 15 prompt failures in two clusters lost to a 12-example structure
    cluster and the run left the prompt level at once."""
    p = policy()
    cl = [
        cluster("structure", 0.9, 12),
        cluster("prompt", 0.9, 8, cause="a"),
        cluster("prompt", 0.9, 7, cause="b"),
    ]
    s, why = p.before_proposal(LevelState("prompt"), att(cl))
    assert s.level == "prompt" and why is None
    first = p.choose(s, att(cl))
    assert first.level == "prompt" and len(first.example_ids) == 8
    # rejected: the other prompt cluster is still untried, so the level is kept (patience or not)
    s, why = policy(patience=1).after_decision(
        s, decision(False), cluster=first, attribution=att(cl)
    )
    assert s.level == "prompt" and "untried" in why
    second = p.choose(s, att(cl))
    assert second.level == "prompt" and second is not first
    s, why = policy(patience=1).after_decision(
        s, decision(False), cluster=second, attribution=att(cl)
    )
    assert s.level == "parameter" and "up to parameter" in why


def test_never_skips_a_level_with_attributed_untried_failures() -> None:
    p = policy(patience=1)
    cl = [cluster("structure", 1.0, 30), cluster("parameter", 0.4, 2), cluster("prompt", 0.3, 1)]
    s = LevelState("prompt")
    seen = []
    for _ in range(6):
        s, _ = p.before_proposal(s, att(cl))
        c = p.choose(s, att(cl))
        seen.append((s.level, c.level))
        nxt, _ = p.after_decision(s, decision(False), cluster=c, attribution=att(cl))
        if nxt is None:
            break
        s = nxt
    levels = [lv for lv, _ in seen]
    assert levels[:3] == ["prompt", "parameter", "structure"]
    # at each level the agent worked on that level's own cluster
    assert all(lv == cl_lv for lv, cl_lv in seen[:3])


def test_cheapest_level_with_failures_first_and_back_down_after_acceptance() -> None:
    p = policy()
    only_structure = [cluster("structure", 0.9, 5)]
    s, why = p.before_proposal(LevelState("prompt"), att(only_structure))
    # nothing attributed at prompt or parameter: the cheapest level with failures is structure
    assert s.level == "structure" and why and "moving to structure" in why
    s, why = p.after_decision(s, decision(True))
    assert s.tried == () and s.exhausted == () and "re-opened" in why
    # the new incumbent's attribution shows a prompt cluster again: down to the cheapest level
    s, why = p.before_proposal(s, att([cluster("prompt", 0.5, 3), cluster("structure", 0.9, 5)]))
    assert s.level == "prompt" and why


def test_moves_one_level_per_decision() -> None:
    p = policy()
    cl = [cluster("structure", 0.9, 5)]
    s, _ = p.before_proposal(
        LevelState("parameter", exhausted=("prompt",)), att([cluster("prompt", 1, 3), *cl])
    )
    s2, why2 = p.before_proposal(s, att([cluster("prompt", 1, 9)]))
    assert s2 == s and why2 is None  # no second move before a decision


def test_moves_up_after_patience_rejections_when_every_cluster_was_tried() -> None:
    p = policy(patience=2)
    cl = [cluster("prompt")]
    s = LevelState("prompt")
    s, why = p.after_decision(s, decision(False), cluster=cl[0], attribution=att(cl))
    assert s.level == "prompt" and s.rejections == 1
    s, why = p.after_decision(s, decision(False), cluster=cl[0], attribution=att(cl))
    assert s.level == "parameter" and s.rejections == 0 and "up to parameter" in why


def test_agent_exhaustion_leaves_the_level_and_scope_is_kept() -> None:
    p = policy(levels=("prompt", "parameter"))
    s, _ = p.before_proposal(LevelState("parameter"), att([cluster("structure", 1.0)]))
    assert s.level == "parameter"
    s, why = p.after_decision(
        LevelState("parameter", 1, ("prompt",)), decision(False), level_exhausted=True
    )
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

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


def policy(levels=ALL, patience=2) -> LadderPolicy:
    return LadderPolicy(levels, EscalationSpec(patience=patience))


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
    cl = [cluster("structure", 1.0, 30), cluster("parameter", 0.6, 2), cluster("prompt", 0.5, 1)]
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


def test_a_guess_does_not_hold_the_run_below_attributed_failures() -> None:
    """news-section: 5 unexplained failures (the ladder's prompt guess at 0.3) kept the run at
    the prompt level for two rejected proposals while 18 failures were attributed to a
    parameter at 0.95. A guess is worked on once nothing attributed is left untried."""
    p = policy(patience=1)
    guess = cluster("prompt", 0.3, 5, step="classify")
    sure = cluster("parameter", 0.95, 18, step="summarize")
    s, why = p.before_proposal(LevelState("prompt"), att([guess, sure]))
    assert s.level == "parameter" and why and "only guesses" in why
    assert p.choose(s, att([guess, sure])) == sure
    # the parameter level is rejected and exhausted: the guess's level gets its turn
    s, why = p.after_decision(s, decision(False), cluster=sure, attribution=att([guess, sure]))
    assert s is not None and s.level == "structure"
    s, why = p.after_decision(s, decision(False), level_exhausted=True)
    assert s is not None and s.level == "prompt" and "back to the untried prompt" in why
    assert p.choose(s, att([guess, sure])) == guess


def test_only_guesses_are_worked_on_at_the_cheapest_level() -> None:
    """With nothing attributed, guesses are the evidence: the cheapest level with one first."""
    p = policy()
    cl = [cluster("structure", 0.3, 9), cluster("prompt", 0.3, 2)]
    s, why = p.before_proposal(LevelState("prompt"), att(cl))
    assert s.level == "prompt" and why is None
    assert p.choose(s, att(cl)).level == "prompt"


def test_an_attributed_cluster_is_chosen_before_a_heavier_guess_at_its_level() -> None:
    p = policy()
    guess = cluster("prompt", 0.3, 20, cause="g")
    sure = cluster("prompt", 0.9, 3, cause="s")
    s, _ = p.before_proposal(LevelState("prompt"), att([guess, sure]))
    assert p.choose(s, att([guess, sure])) == sure
    # rejected: no attributed cluster is untried anywhere, so the untried guess keeps the level
    s, why = policy(patience=1).after_decision(
        s, decision(False), cluster=sure, attribution=att([guess, sure])
    )
    assert s.level == "prompt" and "untried" in why
    assert p.choose(s, att([guess, sure])) == guess


def test_min_confidence_sets_what_counts_as_attributed() -> None:
    cl = [cluster("prompt", 0.3, 5), cluster("parameter", 0.95, 18)]
    low = LadderPolicy(ALL, EscalationSpec(min_confidence=0.2))
    s, why = low.before_proposal(LevelState("prompt"), att(cl))
    assert s.level == "prompt" and why is None  # at 0.2 the prompt cluster is an attribution


def test_the_removed_jump_key_still_validates() -> None:
    """`high_confidence` drove a jump to the dominant cluster's level, removed when levels
    started being weighed together; tenant.yaml files written from the old templates set it."""
    assert EscalationSpec.model_validate({"patience": 2, "high_confidence": 0.8}).patience == 2

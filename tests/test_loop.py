"""The loop end to end on the offline demo tenants: built-in agent, budgets, and the guards that
block a bad proposal before any evaluation is paid for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fapo.loop import Run, RunOptions, run
from fapo.observers import Decided, Event, ProposalStarted
from fapo.records import Status
from fapo.tenant import load_tenant


def decisions(run_dir: Path) -> dict[str, dict]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted((run_dir / "variants").glob("v*/decision.json"))
    }


def levels_accepted(run_dir: Path) -> list[str]:
    out = []
    for vid, d in decisions(run_dir).items():
        if d["status"] == "accepted":
            events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
            out += [
                e["data"]["level"] for e in events if e["kind"] == "proposal" and e["key"] == vid
            ]
    return out


@pytest.mark.parametrize("tenant", ["demo-qa", "demo-instructions"])
def test_builtin_agent_climbs_prompt_parameter_structure(project, tenant: str) -> None:
    if not (project.tenants_dir / tenant).is_dir():
        pytest.skip(f"{tenant} not present")
    res = run(tenant, RunOptions(agent="builtin", run_id="e2e"), project)
    assert res.val[res.best] >= 0.90 and res.test[res.best] >= 0.90, (res.val, res.test)
    assert res.val["v000"] < 0.5
    lv = levels_accepted(res.run_dir)
    assert [x for x in ("prompt", "parameter", "structure") if x in lv] == [
        "prompt",
        "parameter",
        "structure",
    ]
    firsts = [lv.index(x) for x in ("prompt", "parameter", "structure")]
    assert firsts == sorted(firsts), lv
    report = (res.run_dir / "report.md").read_text()
    assert "Validation→test gap" in report and "Cost per accepted improvement" in report
    assert "simulated model, not an LLM" in report


def test_variant_budget_stops_cleanly(project) -> None:
    res = run(
        "demo-qa", RunOptions(agent="builtin", run_id="b1", budget={"max_variants": 1}), project
    )
    assert "variant budget" in res.stop_reason
    assert len(decisions(res.run_dir)) == 1
    assert json.loads((res.run_dir / "run.json").read_text())["status"] == "finished"
    assert "v000" in res.test  # the sealed test split is still evaluated at the end


def test_call_budget_stops_mid_run_and_still_reports(project) -> None:
    res = run(
        "demo-qa", RunOptions(agent="builtin", run_id="b2", budget={"max_calls": 150}), project
    )
    assert "call budget" in res.stop_reason
    assert (res.run_dir / "report.md").is_file()


def scripted(tmp_path: Path, proposals: list[dict], reviews: list[dict] | None = None) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"proposals": proposals, "reviews": reviews or []}))
    return f"scripted:{path}"


def _blocked_run(project, tmp_path: Path, proposal: dict, **kw) -> tuple[Path, dict]:
    t = load_tenant("demo-qa", project)
    seen: list[Event] = []
    r = Run(
        t,
        RunOptions(
            agent=scripted(tmp_path, [proposal], **kw), run_id="s", budget={"max_variants": 1}
        ),
        callbacks=[seen.append],
    )
    res = r.execute()
    decided = [e for e in seen if isinstance(e, Decided)]
    assert [e.decision.status for e in decided] == [Status.INVALID]
    # (attribution's interventions may call the model before the proposal; nothing after it)
    assert decided[0].budget["calls"] == next(
        e.budget["calls"] for e in seen if isinstance(e, ProposalStarted)
    ), "no task-model call between the proposal and the blocked candidate's decision"
    v = res.run_dir / "variants" / "v001"
    assert not (v / "eval").exists(), "a blocked candidate must never be evaluated"
    return v, json.loads((v / "review.json").read_text())


def _failed(review: dict) -> dict[str, str]:
    return {c["name"]: c["reason"] for c in review["checks"] if not c["passed"]}


def test_scorer_edit_is_blocked(project, tmp_path) -> None:
    _, review = _blocked_run(
        project,
        tmp_path,
        {"files": {"context/scorer.py": "def score(example, prediction):\n    return 1.0\n"}},
    )
    assert "workspace_only" in _failed(review)


def test_param_edit_at_prompt_level_is_out_of_scope(project, tmp_path) -> None:
    t = load_tenant("demo-qa", project)
    _, review = _blocked_run(
        project,
        tmp_path,
        {
            "files": {
                "params.yaml": t.files["params.yaml"].replace(
                    "temperature: 0.0", "temperature: 0.5"
                )
            }
        },
    )
    assert "params.yaml" in _failed(review)["scope"]


def test_write_outside_workspace_is_blocked(project, tmp_path) -> None:
    _, review = _blocked_run(
        project,
        tmp_path,
        {
            "files": {
                "prompts/answer.md": (project.tenants_dir / "demo-qa/prompts/answer.md").read_text()
                + "\nBe brief.\n"
            },
            "outside": {"scorer.py": "def score(e, p):\n    return 1.0\n"},
        },
    )
    failed = _failed(review)
    assert "outside_writes" in failed and "immutable_unchanged" in failed


def test_val_answer_copied_into_prompt_is_blocked(project, tmp_path) -> None:
    from fapo.review import LeakIndex

    t = load_tenant("demo-qa", project)
    sealed = LeakIndex(t).labels  # val/test answers that never occur in train
    val = next(ex for ex in t.examples("val") if ex.label["answer"].lower() in sealed)
    leak = t.files["prompts/answer.md"] + f"\nHint: the answer may be {val.label['answer']}.\n"
    _, review = _blocked_run(project, tmp_path, {"files": {"prompts/answer.md": leak}})
    assert "label" in _failed(review)["no_sealed_leakage"]


def test_dropped_placeholder_is_blocked(project, tmp_path) -> None:
    t = load_tenant("demo-qa", project)
    text = t.files["prompts/answer.md"].replace("{passages}", "")
    _, review = _blocked_run(project, tmp_path, {"files": {"prompts/answer.md": text}})
    assert "{passages}" in _failed(review)["placeholders_intact"]


def test_param_out_of_bounds_is_blocked(project, tmp_path) -> None:
    spec = project.tenants_dir / "demo-qa" / "tenant.yaml"
    spec.write_text(
        spec.read_text().replace("scope: [prompt, parameter, structure]", "scope: [parameter]")
    )
    t = load_tenant("demo-qa", project)
    assert t.spec.scope == ["parameter"]
    text = t.files["params.yaml"].replace(f"k: {t.params['k']}", "k: 99")
    assert "k: 99" in text
    _, review = _blocked_run(project, tmp_path, {"files": {"params.yaml": text}})
    assert "outside" in _failed(review)["params_in_bounds"]


def test_reviewer_veto_blocks_a_clean_change(project, tmp_path) -> None:
    t = load_tenant("demo-qa", project)
    text = t.files["prompts/answer.md"] + "\nAnswer with only the final answer.\n"
    v, review = _blocked_run(
        project,
        tmp_path,
        {"files": {"prompts/answer.md": text}},
        reviews=[{"approve": False, "reasons": ["hard-codes a format"]}],
    )
    assert not _failed(review) and review["blocked"]
    assert "hard-codes a format" in json.loads((v / "decision.json").read_text())["reason"]


def test_agent_spend_counts_against_the_usd_budget(project) -> None:
    from fapo.budget import Budget
    from fapo.errors import BudgetExhausted
    from fapo.llm import Meter
    from fapo.spec import BudgetSpec

    meter = Meter(max_usd=1.0)
    b = Budget(BudgetSpec(max_usd=1.0), meter)
    meter.admit()  # nothing spent yet
    b.agent_usd += 1.25
    assert "USD budget" in (b.exhausted(0.0) or "")
    with pytest.raises(BudgetExhausted):
        meter.admit()  # the next task-model call is refused too

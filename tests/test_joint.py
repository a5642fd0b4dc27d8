"""Joint candidates (fapo/joint.py): a parameter-level candidate may carry one prompt of the step
its key feeds. Review refuses every other shape (one test per refusal), and the built-in loop
fixes a tenant whose two defects repair only together (tests/joint_tenant.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from joint_tenant import write

from fapo.evaluate import evaluate
from fapo.joint import joint_pairs, joint_problem, read_records
from fapo.loop import RunOptions, run
from fapo.review import LeakIndex, review_in_code
from fapo.settings import load_settings
from fapo.tenant import Tenant, load_tenant

ROOT = Path(__file__).resolve().parents[1]
STEPS = "\n\nReason step by step: first find the intermediate fact, then answer.\n"


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tenant, Path]:
    """The planted policy-qa tenant (evidence -> answer) and its baseline's train records."""
    tmp = tmp_path_factory.mktemp("joint")
    src = ROOT / "bench" / "planted" / "policy-qa"
    shutil.copytree(src, tmp / "policy-qa", ignore=shutil.ignore_patterns("fixes", "defects.yaml"))
    tenant = load_tenant(tmp / "policy-qa", load_settings(ROOT))
    evaluate(tenant, "train", out_dir=tmp / "eval", use_cache=False, limit=4)
    return tenant, tmp / "eval" / "results.jsonl"


def _params(tenant: Tenant, **values: Any) -> str:
    return yaml.safe_dump({**tenant.params, **values})


def _prompt(tenant: Tenant, name: str) -> str:
    return tenant.files[f"prompts/{name}.md"] + STEPS


def _one_concern(tenant: Tenant, changes: dict[str, str | None], level: str, records: Path | None):
    checks = review_in_code(
        tenant, changes, level=level, stray=[], outside=[],
        immutable_before=tenant.immutable_hashes(), leak_index=LeakIndex(tenant), known={},
        keys={}, parent_records=records,
    )  # fmt: skip
    return {c.name: c for c in checks}


def test_the_brief_offers_the_length_key_with_its_own_steps_prompt(policy) -> None:
    tenant, records = policy
    # evidence_max_tokens feeds the evidence step's calls; answer_temperature only a temperature
    assert joint_pairs(tenant, read_records(records)) == {
        "evidence_max_tokens": ["prompts/evidence.md"]
    }


def test_a_key_and_a_prompt_of_its_step_pass_as_one_concern(policy) -> None:
    tenant, records = policy
    changes = {
        "params.yaml": _params(tenant, evidence_max_tokens=128),
        "prompts/evidence.md": _prompt(tenant, "evidence"),
    }
    checks = _one_concern(tenant, changes, "parameter", records)
    assert all(c.passed for c in checks.values()), [c for c in checks.values() if not c.passed]


REFUSALS = {
    # name: (level, changes builder, words of the refusal)
    "prompt of another step": (
        "parameter",
        lambda t: {
            "params.yaml": _params(t, evidence_max_tokens=128),
            "prompts/answer.md": _prompt(t, "answer"),
        },
        "prompts/answer.md is rendered by answer, evidence_max_tokens feeds evidence",
    ),
    "a temperature key": (
        "parameter",
        lambda t: {
            "params.yaml": _params(t, answer_temperature=0.0),
            "prompts/answer.md": _prompt(t, "answer"),
        },
        "answer_temperature feeds no model call",
    ),
    "two keys": (
        "parameter",
        lambda t: {
            "params.yaml": _params(t, evidence_max_tokens=128, answer_temperature=0.0),
            "prompts/evidence.md": _prompt(t, "evidence"),
        },
        "params.yaml changes 2 keys",
    ),
    "two prompts": (
        "parameter",
        lambda t: {
            "params.yaml": _params(t, evidence_max_tokens=128),
            "prompts/evidence.md": _prompt(t, "evidence"),
            "prompts/answer.md": _prompt(t, "answer"),
        },
        "2 files besides params.yaml",
    ),
    "a prompt alone": (
        "parameter",
        lambda t: {"prompts/evidence.md": _prompt(t, "evidence")},
        "changed without params.yaml",
    ),
    "a deleted prompt": (
        "parameter",
        lambda t: {"params.yaml": _params(t, evidence_max_tokens=128), "prompts/evidence.md": None},
        "is new or deleted",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_review_refuses(policy, name: str) -> None:
    tenant, records = policy
    level, build, words = REFUSALS[name]
    check = _one_concern(tenant, build(tenant), level, records)["one_concern"]
    assert not check.passed and words in check.reason, check.reason


def test_review_refuses_a_new_prompt_at_the_parameter_level(policy) -> None:
    tenant, records = policy
    changes = {
        "params.yaml": _params(tenant, evidence_max_tokens=128),
        "prompts/extra.md": "Select the sentences.\n",
    }
    checks = _one_concern(tenant, changes, "parameter", records)
    assert not checks["scope"].passed and "prompts/extra.md" in checks["scope"].reason


def test_review_refuses_a_joint_change_without_the_parents_records(policy) -> None:
    tenant, _ = policy
    changes = {
        "params.yaml": _params(tenant, evidence_max_tokens=128),
        "prompts/evidence.md": _prompt(tenant, "evidence"),
    }
    check = _one_concern(tenant, changes, "parameter", None)["one_concern"]
    assert not check.passed and "no train records of the parent" in check.reason


def test_review_refuses_a_joint_change_on_candidate_chain_code(policy) -> None:
    """A parent whose chain.py an agent wrote is never built in-process to bind the pair."""
    tenant, records = policy
    parent = tenant.variant({"chain.py": tenant.files["chain.py"] + "\n# changed\n"})
    changes = {
        "params.yaml": _params(parent, evidence_max_tokens=128),
        "prompts/evidence.md": _prompt(parent, "evidence"),
    }
    problem = joint_problem(parent, changes, read_records(records))
    assert problem is not None and "candidate chain code" in problem
    assert joint_pairs(parent, read_records(records)) == {}


def test_the_prompt_level_may_not_carry_a_parameter(policy) -> None:
    """A joint candidate counts as the parameter level: at the prompt level params.yaml is out
    of scope (the loop proposes it only once the prompt level is behind it)."""
    tenant, records = policy
    changes = {
        "params.yaml": _params(tenant, evidence_max_tokens=128),
        "prompts/evidence.md": _prompt(tenant, "evidence"),
    }
    checks = _one_concern(tenant, changes, "prompt", records)
    assert not checks["scope"].passed and "params.yaml" in checks["scope"].reason


def test_a_key_that_feeds_no_model_call_is_refused(tmp_path: Path) -> None:
    """kb-match's retrieval depth `k` feeds code, not a model: no step binding, no joint."""
    src = ROOT / "bench" / "planted" / "kb-match"
    shutil.copytree(src, tmp_path / "kb", ignore=shutil.ignore_patterns("fixes", "defects.yaml"))
    tenant = load_tenant(tmp_path / "kb", load_settings(ROOT))
    evaluate(tenant, "train", out_dir=tmp_path / "eval", use_cache=False, limit=2)
    records = read_records(tmp_path / "eval" / "results.jsonl")
    prompt = sorted(r for r in tenant.files if r.startswith("prompts/"))[0]
    changes = {"params.yaml": _params(tenant, k=4), prompt: tenant.files[prompt] + STEPS}
    problem = joint_problem(tenant, changes, records)
    assert problem is not None and "params.yaml key k feeds no model call" in problem


def test_the_builtin_loop_fixes_two_defects_that_repair_only_together(tmp_path: Path) -> None:
    """tests/joint_tenant.py: the step-by-step remedy alone gets the town cut off, a longer
    limit alone still names the bindery; the built-in agent accepts both in one joint
    candidate at the parameter level, after the prompt level found nothing."""
    write(tmp_path / "tenants")
    (tmp_path / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n'
    )
    res = run("joint", RunOptions(agent="builtin", run_id="j"), load_settings(tmp_path))
    assert len(res.accepted) == 1, res.stop_reason
    events = [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]
    props = {e["key"]: e["data"] for e in events if e["kind"] == "proposal"}
    joint = props[res.accepted[0]]
    assert joint["level"] == "parameter"
    assert joint["rationale"].startswith("[joint:param:answer_max_tokens=")
    assert sorted(joint["changes"]) == ["params.yaml", "prompts/answer.md"]
    # the prompt level came first and found nothing (neither half gains alone)
    assert [p["level"] for v, p in props.items() if v < res.accepted[0]][:1] == ["prompt"]
    vdir = res.run_dir / "variants" / res.accepted[0]
    for split in ("val", "test"):
        assert json.loads((vdir / "eval" / split / "summary.json").read_text())["mean"] == 1.0


PROMPT = "Write it down now please.\n{q}\n"


def _param_brief() -> Any:
    from fapo.agents.base import Brief
    from fapo.records import Cluster

    trace = {
        "id": "e1", "inputs": {"q": "x"}, "label": "y", "prediction": "z", "score": 0.0,
        "steps": [{"step": "a", "update": "{}", "calls": [
            {"prompt": "Write it down now please.", "output": "", "temperature": 0.0}]}],
    }  # fmt: skip
    return Brief(
        tenant="t",
        level="parameter",
        objective="",
        scores={"train": 0.5},
        cluster=Cluster(
            step="a", cause="unexplained", level="parameter", confidence=0.5, example_ids=["e1"]
        ),
        traces=[trace],
        allowed_files=["params.yaml", "prompts/a.md"],
        param_bounds={"n": {"type": "int", "min": 1, "max": 8}},
        param_values={"n": 1},
        joint={"n": ["prompts/a.md"]},
    )


def _workspace(ws: Path) -> None:
    (ws / "prompts").mkdir()
    (ws / "prompts" / "a.md").write_text(PROMPT)
    (ws / "params.yaml").write_text("n: 1\n")


def test_joint_moves_race_only_when_no_single_move_gained(tmp_path: Path) -> None:
    from fapo.agents import builtin

    _workspace(tmp_path)
    raced: list[dict] = []

    def score(changes, repeats=1, ids=None):  # n alone gains: the joint pool is never built
        raced.append(dict(changes))
        n = yaml.safe_load(changes.get("params.yaml", "n: 1")).get("n")
        return {i: 0.9 if n >= 4 else 0.5 for i in ids or ("e1", "e2", "e3")}

    prop = builtin.BuiltinAgent(train_score=score).propose(_param_brief(), tmp_path)
    assert prop.rationale.startswith("[param:n="), prop.rationale
    assert not [c for c in raced if len(c) > 1]


def test_joint_moves_pair_a_value_with_a_prompt_move_and_skip_values_that_lost(
    tmp_path: Path,
) -> None:
    from fapo.agents import builtin

    _workspace(tmp_path)
    raced: list[dict] = []

    def score(changes, repeats=1, ids=None):  # only a larger n with a changed prompt repairs
        raced.append(dict(changes))
        n = yaml.safe_load(changes.get("params.yaml", "n: 1")).get("n")
        prompt = changes.get("prompts/a.md", PROMPT)
        # n = 2 loses alone (so it is never paired)
        value = 0.1 if n == 2 else 0.9 if n >= 4 and prompt != PROMPT else 0.5
        return {i: value for i in ids or ("e1", "e2", "e3")}

    prop = builtin.BuiltinAgent(train_score=score).propose(_param_brief(), tmp_path)
    assert prop.failure is None, prop.failure
    assert prop.rationale.startswith("[joint:param:n="), prop.rationale
    joint = [c for c in raced if len(c) == 2]
    values = {yaml.safe_load(c["params.yaml"])["n"] for c in joint}
    assert 2 not in values and len(values) <= builtin.JOINT_VALUES
    assert len({json.dumps(c, sort_keys=True) for c in joint}) <= builtin.MAX_JOINT
    # the workspace holds the winning pair
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["n"] >= 4
    assert (tmp_path / "prompts" / "a.md").read_text() != PROMPT

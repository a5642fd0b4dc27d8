"""The built-in agent on attribution's verdicts: an upstream prompt defect is reachable, the move
library carries no one tenant's wording, noisy steps are scored with repeats, and a rejected move
may be re-scored once the incumbent changed. Plus: a resumed run replays its interventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from attrib_tenants import make_tenant

import fapo.interventions
from fapo.agents import builtin
from fapo.agents.base import Brief, Cluster
from fapo.loop import RunOptions, run
from fapo.settings import load_settings


def project(tmp_path: Path):
    (tmp_path / "tenants").mkdir()
    (tmp_path / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n',
        encoding="utf-8",
    )
    return load_settings(tmp_path)


def test_builtin_agent_fixes_an_upstream_prompt_defect(tmp_path: Path) -> None:
    settings = project(tmp_path)
    root = make_tenant(settings.tenants_dir, "upstream")
    res = run(root, RunOptions(agent="builtin", run_id="up"), settings)
    assert res.val["v000"] == 0.0
    assert res.val[res.best] == 1.0, res.stop_reason
    events = [json.loads(x) for x in (res.run_dir / "events.jsonl").read_text().splitlines()]
    first_attr = next(e for e in events if e["kind"] == "attribution")["data"]
    assert [(c["step"], c["level"]) for c in first_attr["clusters"]] == [("extract", "prompt")]
    assert first_attr["interventions"]["calls"] > 0
    accepted = res.accepted[0]
    prop = next(e for e in events if e["kind"] == "proposal" and e["key"] == accepted)["data"]
    assert prop["changes"] == ["prompts/extract.md"] and prop["level"] == "prompt"


def test_resume_replays_interventions_without_running_them(tmp_path: Path, monkeypatch) -> None:
    settings = project(tmp_path)
    root = make_tenant(settings.tenants_dir, "depth", with_checks=False)
    first = run(root, RunOptions(agent="builtin", run_id="r1"), settings)
    assert first.val[first.best] == 1.0

    def refuse(*a, **k):
        raise AssertionError("interventions ran again on resume")

    monkeypatch.setattr(fapo.interventions.InterventionRunner, "probe_many", refuse)
    again = run(root, RunOptions(agent="builtin", run_id="r1", resume=True), settings)
    assert again.best == first.best and again.accepted == first.accepted


def test_move_library_has_no_tenant_wording() -> None:
    words = " ".join(text for text, _ in builtin.REMEDIES.values()) + builtin.HOP_QUERY_PROMPT
    for demo_word in ("bridge", "passage", "city", "capital", "bullet"):
        assert demo_word not in words.lower(), demo_word


def _brief(history: list[dict], temperature: float | None = 0.0) -> Brief:
    trace = {
        "id": "e1",
        "inputs": {"q": "x"},
        "label": "y",
        "prediction": "z",
        "score": 0.0,
        "steps": [
            {
                "step": "a",
                "update": "{}",
                "calls": [
                    {
                        "prompt": "Write it down now please.",
                        "output": "",
                        "temperature": temperature,
                    }
                ],
            },
        ],
    }
    return Brief(
        tenant="t",
        level="prompt",
        objective="",
        scores={"train": 0.5},
        cluster=Cluster(
            step="a", cause="unexplained", level="prompt", confidence=0.5, example_ids=["e1"]
        ),
        traces=[trace],
        allowed_files=["prompts/a.md"],
        history=history,
    )


@pytest.mark.parametrize(("temperature", "repeats"), [(0.0, 1), (1.0, builtin.NOISY_REPEATS)])
def test_moves_are_scored_with_repeats_when_the_step_samples(
    tmp_path: Path, temperature: float, repeats: int
) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.md").write_text("Write it down now please.\n{q}\n")
    seen: list[int] = []

    def score(changes, repeats=1, ids=None):
        seen.append(repeats)
        return {i: 0.9 if changes else 0.5 for i in ids or ("e1", "e2")}

    agent = builtin.BuiltinAgent(train_score=score)
    prop = agent.propose(_brief([], temperature), tmp_path)
    assert prop.failure is None
    assert set(seen) == {repeats}


def test_a_rejected_move_is_rescored_after_an_acceptance(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.md").write_text("Write it down now please.\n{q}\n")
    agent = builtin.BuiltinAgent(train_score=lambda ch, repeats=1, ids=None: {})
    mid = "prompt:only-answer@prompts/a.md"
    rejected = {"rationale": f"[{mid}] x", "outcome": "rejected"}
    accepted = {"rationale": "[param:k=3] y", "outcome": "accepted"}
    assert mid in agent._tried(_brief([rejected]))
    assert mid not in agent._tried(_brief([rejected, accepted]))
    assert "param:k=3" in agent._tried(_brief([rejected, accepted]))


HARMFUL = (
    "Answer the question from the entries. Think it through step by step.\n"
    "Answer with only the final answer.\n\nEntries:\n- {entries}\n\nQuestion: {q}\n"
)


def test_a_harmful_instruction_is_removed_by_a_drop_move(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.md").write_text(HARMFUL)

    def score(changes, repeats=1, ids=None):
        text = changes.get("prompts/a.md") or HARMFUL
        return {i: 0.5 if "step by step" in text else 0.9 for i in ids or ("e1", "e2")}

    brief = _brief([]).model_copy(update={"traces": [_trace_with(HARMFUL)]})
    prop = builtin.BuiltinAgent(train_score=score).propose(brief, tmp_path)
    assert prop.failure is None
    assert prop.rationale.startswith("[prompt:drop-")
    after = (tmp_path / "prompts" / "a.md").read_text()
    assert "step by step" not in after
    # only that sentence went: the other instructions, the data lines and placeholders stay
    assert "Answer the question from the entries." in after
    assert "Answer with only the final answer." in after
    assert "{entries}" in after and "{q}" in after


def test_drop_moves_never_touch_data_lines_or_the_last_instruction() -> None:
    assert builtin._instruction_sentences(HARMFUL) == [
        "Answer the question from the entries.",
        "Think it through step by step.",
        "Answer with only the final answer.",
    ]
    only = "Answer the question below.\n\nQuestion: {q}\n"
    assert [builtin._without(only, s) for s in builtin._instruction_sentences(only)] == [None]


def _trace_with(prompt: str) -> dict:
    return {
        "id": "e1",
        "inputs": {"q": "x"},
        "label": "y",
        "prediction": "z",
        "score": 0.0,
        "steps": [
            {
                "step": "a",
                "update": json.dumps({"answer": "z"}),
                "calls": [{"prompt": prompt, "output": "z", "temperature": 1.0}],
            }
        ],
    }


def test_a_sampling_step_gets_a_majority_vote_move(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.md").write_text(HARMFUL)
    brief = _brief([]).model_copy(
        update={
            "level": "structure",
            "traces": [_trace_with(HARMFUL)],
            "cluster": Cluster(
                step="a", cause="noise", level="structure", confidence=0.8, example_ids=["e1"]
            ),
        }
    )
    moves = dict(builtin.BuiltinAgent()._structure_moves(tmp_path, brief))
    vote = moves["structure:majority_vote@a.answer"]["structure.yaml"]
    assert "majority_vote" in vote and f"samples: {builtin.VOTE_SAMPLES}" in vote


def _param_ws(tmp_path: Path) -> Path:
    (tmp_path / "params.yaml").write_text("temperature: 0.0\nk: 2\n")
    return tmp_path


@pytest.mark.parametrize(
    ("temperature", "new", "luck"),
    [
        (0.0, "temperature: 0.7\nk: 2\n", True),  # more randomness where nothing samples
        (0.0, "temperature: 0.0\nk: 3\n", False),  # another parameter
        (1.0, "temperature: 0.7\nk: 2\n", False),  # a step samples: draws are compared
        (None, "temperature: 0.7\nk: 2\n", False),  # the provider's default temperature samples
    ],
)
def test_a_temperature_raise_where_nothing_samples_is_not_raced(
    tmp_path: Path, temperature: float | None, new: str, luck: bool
) -> None:
    ws = _param_ws(tmp_path)
    # the engine measured `temperature` as a sampling key (fapo/param_effects.py)
    brief = _brief([], temperature).model_copy(update={"sampling": ["temperature"]})
    assert builtin._luck_only({"params.yaml": new}, ws, brief) is luck
    # a key the engine did not measure as one is raced, whatever its name
    assert not builtin._luck_only({"params.yaml": new}, ws, _brief([], temperature))


@pytest.mark.parametrize(("temperature", "luck"), [(0.0, True), (0.8, False)])
def test_a_vote_at_a_step_that_does_not_sample_is_not_raced(
    tmp_path: Path, temperature: float, luck: bool
) -> None:
    vote = {"kind": "majority_vote", "node": "a", "key": "x", "samples": 7}
    changes = {"structure.yaml": yaml.safe_dump({"transforms": [vote]})}
    assert builtin._luck_only(changes, tmp_path, _brief([], temperature)) is luck
    other = {"kind": "majority_vote", "node": "b", "key": "x", "samples": 7}  # b is not traced
    assert not builtin._luck_only(
        {"structure.yaml": yaml.safe_dump({"transforms": [other]})}, tmp_path, _brief([], 0.0)
    )


def test_sampling_only_moves_are_left_out_of_the_race_and_listed(tmp_path: Path) -> None:
    ws = _param_ws(tmp_path)
    raced: list[str] = []

    def score(changes, repeats=1, ids=None):
        text = changes.get("params.yaml")
        if text:
            raced.append(text)
        gain = 0.9 if text and "k: 3" in text else 0.5
        return {i: gain for i in ids or ("e1", "e2")}

    brief = _brief([], 0.0).model_copy(
        update={
            "level": "parameter",
            "param_bounds": {
                "temperature": {"type": "float", "min": 0.0, "max": 1.0},
                "k": {"type": "int", "min": 1, "max": 3},
            },
            "sampling": ["temperature"],
        }
    )
    prop = builtin.BuiltinAgent(train_score=score).propose(brief, ws)
    assert prop.failure is None and prop.rationale.startswith("[param:k=3]")
    assert raced and not any("temperature: 0.0" not in t for t in raced)
    trials = json.loads(prop.invocations[0].final_text)
    skipped = [t["move"] for t in trials if t["dropped"] == "sampling_only"]
    assert skipped and all(m.startswith("param:temperature=") for m in skipped)


@pytest.mark.parametrize(("temperature", "cached"), [(0.0, {"e2"}), (1.0, set())])
def test_the_race_starts_on_probed_failures_only_when_moves_are_scored_on_one_draw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temperature: float, cached: set
) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.md").write_text("Write it down now please.\n{q}\n")
    seen: list[set] = []
    real = builtin.racing.race_moves

    def spy(*a, **kw):
        seen.append(set(kw.get("cached", ())))
        return real(*a, **kw)

    monkeypatch.setattr(builtin.racing, "race_moves", spy)
    agent = builtin.BuiltinAgent(
        train_score=lambda ch, repeats=1, ids=None: {
            i: 0.9 if ch else 0.0 for i in ids or ("e1", "e2")
        }  # fmt: skip
    )
    agent.probed = lambda: {"e2"}
    assert agent.propose(_brief([], temperature), tmp_path).failure is None
    assert seen == [cached]

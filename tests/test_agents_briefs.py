"""What the real Claude Code / Codex CLIs are given per role and level, and what is recorded of
every call (issue 16). Each CLI reads its workspace through its own tools against a scripted
loopback model; the tests assert on what reached the model (the tool results in its requests),
so a piece missing from the workspace fails here. The task model is the deterministic
simulator (sim:default), not an LLM."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from agentmock import Dynamic, Hang, MockModelServer, Script, Text, Tool, json_answer, veto
from agentmock.harness import ROOT, claude, codex, require, workspace

from fapo.agents.base import AttributionRequest, Brief
from fapo.agents.cli_runner import bind_budget
from fapo.agents.prompts import LEVEL_DEFINITIONS, SYNTHETIC_RULE, TECHNIQUES
from fapo.attribute import traces_for
from fapo.evaluate import evaluate
from fapo.findings import report_lines
from fapo.propose import Incumbent, attribution_context, propose
from fapo.records import (
    Cluster,
    DecisionRecord,
    FindingKind,
    ProposalFailure,
    Severity,
    Status,
    UsageSource,
)
from fapo.review import LeakIndex, agent_review, record_findings, review_in_code
from fapo.run_setup import chain_functions
from fapo.tenant import load_tenant

PROPOSE, ATTRIBUTE, REVIEW = "[fapo:role=propose]", "[fapo:role=attribute]", "[fapo:role=review]"
DEMO = ROOT / "tenants" / "demo-qa"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """demo-qa copied without its documented fixes, its baseline evaluated on train (sim)."""
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(DEMO, root / "demo-qa", ignore=shutil.ignore_patterns("fixes"))
    tenant = load_tenant(root / "demo-qa")
    out = root / "eval-train"
    summary = evaluate(tenant, "train", out_dir=out, use_cache=False)
    results = out / "results.jsonl"
    failing = [
        json.loads(line)["id"]
        for line in results.read_text().splitlines()
        if json.loads(line)["score"] < 1.0
    ]
    return tenant, results, failing, summary


def _inc(demo) -> Incumbent:
    tenant, results, _, summary = demo
    return Incumbent(
        id="v000", tenant=tenant, scores={"train": summary.mean, "val": 0.0}, train_results=results
    )


def _cluster(demo, level: str, step: str = "answer") -> Cluster:
    return Cluster(
        step=step,
        cause="the step cannot find the evidence it needs",
        level=level,
        confidence=0.8,
        example_ids=demo[2][:4],
        suggested_fix="give the step what it needs",
    )


def _seen(srv: MockModelServer) -> str:
    """Everything the CLI sent the model: prompts and tool results (what it read)."""
    return json.dumps([r.body for r in srv.model_requests()], ensure_ascii=False)


def _read(kind: str, rel: str) -> Tool:
    if kind == "claude-code":
        return Tool("Read", {"file_path": rel})
    return Tool("exec_command", {"cmd": f"cat {rel}"})


def _sealed_texts(tenant) -> list[str]:
    """Every validation/test question of the tenant: none may reach any agent."""
    return [
        str(v) for s in ("val", "test") for ex in tenant.examples(s) for v in ex.inputs.values()
    ]


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    nxt = markdown.find("\n## ", start + len(heading))
    return markdown[start : nxt if nxt > 0 else len(markdown)]


# -- structure level: written only from the generated catalogue --------------------------------


def _hop_from_catalogue(seen: str) -> dict:
    """The retrieval_hop example of the catalogue the agent read, attached to the chain's first
    step and searching with the first function the chain registered (both from what it read)."""
    seen = re.sub(r"(?m)^\s*\d+\t", "", seen)  # Claude's Read numbers every line
    cat = seen[seen.index("## `retrieval_hop`") :]
    example = cat[cat.index("```yaml") + 7 : cat.index("```", cat.index("```yaml") + 7)]
    (hop,) = yaml.safe_load(example)["transforms"]
    steps = re.findall(r"- `([^`]+)`", seen[seen.index("# The chain's steps, in graph order") :])
    registered = re.search(r"registered by this chain: `([^`]+)`", seen)
    assert steps and registered
    return {**hop, "after": steps[0], "search": registered.group(1)}


def _write(kind: str, rel: str, text: str) -> Tool:
    if kind == "claude-code":
        return Tool("Write", {"file_path": rel, "content": text})
    return Tool("exec_command", {"cmd": f"cat > {rel} <<'FAPO_EOF'\n{text}FAPO_EOF"})


def _write_hop_prompt(kind: str) -> Dynamic:
    def make(results: str) -> Tool:
        hop = _hop_from_catalogue(results)
        text = "Write one search query for the missing link.\n" + "".join(
            f"{v}: {{{v}}}\n" for v in hop["inputs"]
        )
        return _write(kind, f"prompts/{hop['query_prompt']}.md", text)

    return Dynamic(make)


def _write_structure(kind: str) -> Dynamic:
    def make(results: str) -> Tool:
        text = yaml.safe_dump({"transforms": [_hop_from_catalogue(results)]}, sort_keys=False)
        return _write(kind, "structure.yaml", text)

    return Dynamic(make)


@pytest.mark.cli
@pytest.mark.parametrize("kind", ["claude-code", "codex"])
def test_structure_proposal_from_the_generated_catalogue_builds(tmp_path, demo, kind):
    require("claude" if kind == "claude-code" else "codex")
    tenant = demo[0]
    script = Script().add(
        PROPOSE,
        _read(kind, "BRIEF.md"),
        _read(kind, "context/transforms.md"),
        _read(kind, "context/chain.md"),
        _read(kind, "structure.yaml"),
        _write_hop_prompt(kind),
        _write_structure(kind),
        Text("Added a retrieval hop after the first step, as the catalogue describes."),
    )
    vdir = tmp_path / "variants" / "v001"
    make, protocol = (claude, "anthropic") if kind == "claude-code" else (codex, "responses")
    with MockModelServer(protocol, script) as srv:
        prop = propose(
            make(tmp_path, srv.url, max_turns=12, timeout_s=60),
            _inc(demo),
            variant="v001",
            level="structure",
            cluster=_cluster(demo, "structure", "retrieve"),
            history=[],
            out_dir=vdir,
            functions=lambda: chain_functions(tenant),
            scratch=tmp_path,
        )
        seen = _seen(srv)
    # what the agent read: the catalogue (every kind with fields and an example), the chain's
    # steps, the current structure.yaml, techniques and rules
    for piece in ("## `postprocess`", "## `majority_vote`", "## `validate_retry`",
                  "## `retrieval_hop`", "| `max_attempts` | int | no | 3; ≥ 2, ≤ 10 |",
                  "`retrieve` → `answer`", "## The current structure.yaml", "transforms: []",
                  "prompts/answer.md`: question, passages", TECHNIQUES[1][:40],
                  SYNTHETIC_RULE[:40]):  # fmt: skip
        assert piece in seen.replace("\\n", "\n"), piece
    assert prop.failure is None, prop.failure
    assert sorted(prop.changes) == ["prompts/hop_query.md", "structure.yaml"]
    stored = {r: (vdir / "files" / r).read_text() for r in prop.changes}
    checks = review_in_code(
        tenant, stored, level="structure", stray=prop.stray, outside=prop.outside,
        immutable_before=tenant.immutable_hashes(), leak_index=LeakIndex(tenant), known={},
    )  # fmt: skip
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert [c.name for c in checks][-1] == "builds"
    assert not any(t in seen for t in _sealed_texts(tenant))


# -- parameter and prompt levels -----------------------------------------------------------------


@pytest.mark.cli
@pytest.mark.parametrize("level", ["parameter", "prompt"])
def test_each_level_brief_reaches_the_agent(tmp_path, demo, level):
    require("codex")
    script = Script().add(PROPOSE, _read("codex", "BRIEF.md"), Text("Nothing to change."))
    with MockModelServer("responses", script) as srv:
        prop = propose(
            codex(tmp_path, srv.url),
            _inc(demo),
            variant="v001",
            level=level,
            cluster=_cluster(demo, level, "retrieve" if level == "parameter" else "answer"),
            history=[],
            out_dir=tmp_path / "variants" / "v001",
            scratch=tmp_path,
        )
        seen = _seen(srv).replace("\\n", "\n")
    assert prop.failure_kind is ProposalFailure.NO_CHANGE
    assert LEVEL_DEFINITIONS[level][:40] in seen
    if level == "parameter":
        # every declared parameter: current value, type, bounds, meaning
        assert "| `k` | 2 | int | 1 … 8 | passages BM25 retrieves" in seen
        assert "| `temperature` | 0.0 | float | 0.0 … 1.0 |" in seen
        assert "| `max_tokens` | 128 | int | 16 … 512 |" in seen
    else:
        # every prompt of the implicated step with the variables it receives
        assert (
            "`prompts/answer.md`: receives {question}, {passages}; used by step `answer` "
            "**(used by the step this cluster blames)**" in seen
        )
        assert "## The current structure.yaml" not in seen
    assert all(t[:30] in seen for t in TECHNIQUES) and SYNTHETIC_RULE in seen


# -- attribution ---------------------------------------------------------------------------------


@pytest.mark.cli
def test_attribution_workspace_has_chain_prompts_scorer_rows_steps_and_levels(tmp_path, demo):
    require("claude")
    tenant, results, failing, _ = demo
    req = AttributionRequest(
        tenant=tenant.name,
        steps=["retrieve", "answer"],
        levels=["prompt", "parameter", "structure"],
        failures=traces_for(results, failing, limit=3),
    )
    first = req.failures[0]["id"]
    answer = {"clusters": [{"step": "answer", "cause": "verbose", "level": "prompt",
                            "confidence": 0.6, "example_ids": [first], "suggested_fix": "x"}]}  # fmt: skip
    reads = ["ATTRIBUTION.md", "chain.py", "prompts/answer.md", "scorer.py", "train_rows.jsonl",
             "steps.md", "failures.json"]  # fmt: skip
    script = Script().add(ATTRIBUTE, *[_read("claude-code", r) for r in reads], json_answer(answer))
    ws = tmp_path / "attr" / "workspace"
    ws.mkdir(parents=True)
    with MockModelServer("anthropic", script) as srv:
        agent = attribution_context(
            claude(tmp_path, srv.url, max_turns=12), tenant, LeakIndex(tenant)
        )
        got = agent.attribute(req, ws)
        seen = _seen(srv).replace("\\n", "\n")
    assert got.failure is None and got.clusters[0].example_ids == [first]
    for level in req.levels:
        assert LEVEL_DEFINITIONS[level][:50] in seen, level
    assert "def build(ctx" in seen  # chain source
    assert "Answer" in seen and "{question}" in seen  # the prompt
    assert "def score(" in seen  # scorer
    train_ids = [ex.id for ex in tenant.examples("train")][:3]
    assert all(f'\\"id\\": \\"{i}\\"' in _seen(srv) or i in seen for i in train_ids)
    assert f"## {first} (score" in seen and "- `retrieve`: " in seen and "- `answer`: " in seen
    assert not any(t in seen for t in _sealed_texts(tenant))


# -- review ----------------------------------------------------------------------------------------


@pytest.mark.cli
def test_reviewer_sees_allowed_files_cluster_parent_and_diff_and_vetoes_outside_file(
    tmp_path, demo
):
    require("claude")
    tenant = demo[0]
    old = tenant.files["prompts/answer.md"]
    new = old + "\nAnswer with only the final answer.\n"
    candidate = tenant.variant({"prompts/answer.md": new})
    diff = "--- a/prompts/answer.md\n+++ b/prompts/answer.md\n@@\n+Answer with only the final answer.\n"
    reads = ["BRIEF.md", "parent/prompts/answer.md", "prompts/answer.md", "context/diff.patch"]
    script = Script().add(
        REVIEW,
        *[_read("claude-code", r) for r in reads],
        veto("the rationale claims a change to params.yaml, outside the allowed files",
             "params.yaml", *reads),
    )  # fmt: skip
    cluster = _cluster(demo, "prompt")
    with MockModelServer("anthropic", script) as srv:
        verdict = agent_review(
            claude(tmp_path, srv.url, max_turns=12), candidate, level="prompt", diff=diff,
            rationale="shorter answers; also lowered k in params.yaml", rules=["only prompts"],
            transcripts=tmp_path / "review-agent", scratch=tmp_path, parent=tenant,
            parent_id="v000", cluster=cluster, leak_index=LeakIndex(tenant),
        )  # fmt: skip
        seen = _seen(srv).replace("\\n", "\n")
    brief = seen[seen.index("# Review: a proposed prompt-level change") :]
    assert (
        "## Files the proposer was allowed to change" in brief and "- `prompts/answer.md`" in brief
    )
    assert cluster.cause in brief and "## Scope rules the proposer had to follow" in brief
    assert "## Files the proposer was allowed to change\n\n- `prompts/answer.md`" in seen
    assert old.strip().splitlines()[0] in seen  # the parent's version
    assert "+Answer with only the final answer." in seen  # the diff
    assert verdict.approve is False
    assert verdict.inspected == reads
    (finding,) = [f for f in verdict.findings if f.kind is FindingKind.REVIEW]
    assert finding.severity is Severity.BLOCK and finding.file == "params.yaml"
    assert finding.file not in candidate_allowed(tenant)
    assert not any(t in seen for t in _sealed_texts(tenant))


def candidate_allowed(tenant) -> list[str]:
    from fapo.workspace import allowed_files

    return allowed_files(tenant, "prompt")


# -- spend of every call -------------------------------------------------------------------------

BRIEF = Brief(tenant="t", level="prompt", objective="x", scores={}, cluster=None, traces=[],
              allowed_files=["prompts/answer.md"])  # fmt: skip


@pytest.mark.cli
@pytest.mark.parametrize("kind", ["claude-code", "codex"])
def test_spend_is_recorded_for_a_killed_agent(tmp_path, kind):
    require("claude" if kind == "claude-code" else "codex")
    ws = workspace(tmp_path)
    script = Script().add(
        PROPOSE, _read(kind, "prompts/answer.md"), _read(kind, "BRIEF.md"), Hang()
    )
    make, protocol = (claude, "anthropic") if kind == "claude-code" else (codex, "responses")
    with MockModelServer(protocol, script) as srv:
        proposal = make(tmp_path, srv.url, timeout_s=6).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.timed_out and inv.exit_code is None
    # two answered responses before the hang: 100 input tokens each from the mock
    assert inv.usage.input_tokens == 200 and inv.usage.usd > 0
    assert inv.usage.source is UsageSource.PARTIAL


def _budget(max_usd: float, task_usd: float):
    """The run's real budget (fapo.budget.Budget), with `task_usd` already spent by the task
    model."""
    from fapo.run_setup import make_budget
    from fapo.spec import BudgetSpec

    budget = make_budget(BudgetSpec(), {"max_usd": max_usd})
    budget.meter.cost_usd = task_usd
    return budget


@pytest.mark.cli
def test_usd_budget_held_within_one_claude_call_then_no_call_starts(tmp_path):
    require("claude")
    ws = workspace(tmp_path)
    reads = [_read("claude-code", "prompts/answer.md")] * 8
    budget = _budget(0.0017, 0.0004)  # $0.0013 left for the agent
    with MockModelServer("anthropic", Script().add(PROPOSE, *reads)) as srv:
        agent = bind_budget(claude(tmp_path, srv.url, max_turns=20), budget)
        proposal = agent.propose(BRIEF, ws)
        requests = len(srv.model_requests())
        budget.agent_usd += proposal.invocations[0].usage.usd  # as the loop does
        again = agent.propose(BRIEF, ws)
        assert len(srv.model_requests()) == requests  # the second call never started
    (inv,) = proposal.invocations
    assert inv.command[inv.command.index("--max-budget-usd") + 1] == "0.001300"
    assert inv.is_error and "max_budget" in (inv.error or "")
    one_response = (100 * 3.0 + 20 * 15.0) / 1e6  # the mock's usage at the table's prices
    assert 0.0013 < inv.usage.usd <= 0.0013 + one_response  # overshoot: one response at most
    assert requests == 3
    (inv2,) = again.invocations
    assert inv2.is_error and "USD budget spent" in (inv2.error or "") and inv2.command == []


@pytest.mark.cli
def test_spent_budget_starts_no_codex_call(tmp_path):
    require("codex")
    budget = _budget(0.3, 0.31)
    with MockModelServer("responses", Script().add(PROPOSE, Text("x"))) as srv:
        agent = bind_budget(codex(tmp_path, srv.url), budget)
        proposal = agent.propose(BRIEF, workspace(tmp_path))
        assert srv.model_requests() == []
    (inv,) = proposal.invocations
    assert inv.is_error and "USD budget spent" in (inv.error or "") and inv.command == []
    assert "--max-budget-usd" not in codex(tmp_path, "http://127.0.0.1:9").argv(
        "codex", "propose", "p", tmp_path, max_usd=1.0
    )


# -- denials and refused attempts become findings -----------------------------------------------


@pytest.mark.cli
def test_denials_are_findings_and_a_sealed_read_blocks(tmp_path, demo):
    require("claude")
    tenant = demo[0]
    val = str(tenant.data_path("val"))
    script = Script().add(
        PROPOSE,
        Tool("Bash", {"command": "ls /"}),  # a tool that is not offered
        Tool("Write", {"file_path": "prompts/answer.md", "content": "x {question} {passages}"}),
        Tool("Read", {"file_path": val}),  # sealed data, by absolute path
        _read("claude-code", "prompts/answer.md"),
        Tool(
            "Write", {"file_path": "prompts/answer.md", "content": "Short: {question} {passages}"}
        ),
        Text("Shorter prompt."),
    )
    vdir = tmp_path / "variants" / "v001"
    with MockModelServer("anthropic", script) as srv:
        prop = propose(
            claude(tmp_path, srv.url, max_turns=12), _inc(demo), variant="v001", level="prompt",
            cluster=_cluster(demo, "prompt"), history=[], out_dir=vdir, scratch=tmp_path,
        )  # fmt: skip
        seen = _seen(srv)
    assert not any(t in seen for t in _sealed_texts(tenant))
    kinds = {(f.kind, f.severity) for f in prop.findings}
    assert (FindingKind.SEALED_READ, Severity.BLOCK) in kinds
    assert (FindingKind.REFUSED_TOOL, Severity.WARN) in kinds  # Bash, and the unread write
    assert len([f for f in prop.findings if f.kind is FindingKind.REFUSED_TOOL]) == 2
    assert prop.failure_kind is ProposalFailure.SEALED_READ and prop.failure_kind.blocks
    decision = DecisionRecord(variant="v001", status=Status.INVALID, reason="blocked: x")
    decision = record_findings(decision, prop, vdir)
    review = json.loads((vdir / "review.json").read_text())
    assert review["blocked"] and len(review["findings"]) == len(prop.findings) >= 3
    assert decision.findings == prop.findings
    lines = "\n".join(report_lines([{"id": "v001", "decision": decision.model_dump(mode="json")}]))
    assert "sealed_read" in lines and "refused_tool" in lines and val in lines


# -- generated, so they cannot drift --------------------------------------------------------------


def test_catalogue_covers_every_transform_kind_with_a_valid_example():
    from fapo import transforms
    from fapo.catalogue import docstring_examples, transform_catalogue, transform_models

    kinds = [m.model_fields["kind"].annotation.__args__[0] for m in transform_models()]
    assert sorted(kinds) == sorted(docstring_examples())  # every kind has a docstring example
    text = transform_catalogue(["search"])
    for model, kind in zip(transform_models(), kinds, strict=True):
        section = _section(text, f"## `{kind}`")
        for field in model.model_fields:
            assert f"| `{field}` |" in section, (kind, field)
        example = section[section.index("```yaml") + 7 : section.rindex("```")]
        transforms.Structure.model_validate(yaml.safe_load(example))  # the example validates
    assert "registered by this chain: `search`" in text


def test_docs_agents_md_shows_the_generated_briefs():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "agent_briefs.py"), "--check"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = (ROOT / "docs" / "agents.md").read_text()
    for heading in ("### Propose", "### Attribute", "### Review"):
        assert heading in doc


def test_history_carries_diff_and_val_effect_as_counts_only(tmp_path, demo):
    from fapo.propose import build_brief, enrich_history, plateau

    tenant = demo[0]
    val = list(tenant.examples("val"))[:4]
    variants = tmp_path / "variants"
    for vid, scores in (("v000", [0, 0, 1, 1]), ("v001", [1, 0, 1, 0]), ("v002", [0, 0, 1, 1])):
        (variants / vid / "eval" / "val").mkdir(parents=True)
        rows = [{"id": ex.id, "repeat": 0, "score": s} for ex, s in zip(val, scores, strict=True)]
        (variants / vid / "eval" / "val" / "results.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    (variants / "v001" / "diff.patch").write_text("--- a/p\n+++ b/p\n+Answer briefly.\n")
    question = max((str(ex.inputs["question"]) for ex in tenant.examples("val")), key=len)
    assert len(question.split()) >= 8  # long enough for the leak index's 8-grams
    (variants / "v002" / "diff.patch").write_text(f"--- a/p\n+++ b/p\n+{question}\n")
    history = [
        {"variant": "v001", "parent": "v000", "level": "prompt", "outcome": "rejected"},
        {"variant": "v002", "parent": "v000", "level": "prompt", "outcome": "rejected"},
    ]
    rich = enrich_history(history, variants, LeakIndex(tenant))
    assert rich[0]["val_effect"] == {"better": 1, "worse": 1, "unchanged": 2}
    assert rich[0]["diff"].endswith("+Answer briefly.\n")
    assert "withheld" in rich[1]["diff"] and question not in rich[1]["diff"]  # sealed text
    brief = build_brief(_inc(demo), "prompt", _cluster(demo, "prompt"), rich)
    text = brief.to_markdown()
    assert "1 better, 1 worse, 2 unchanged (counts only)" in text and "+Answer briefly." in text
    assert not any(ex.id in text for ex in val)  # no validation id, input or label
    assert not any(t in text for t in _sealed_texts(tenant))
    assert brief.plateau and "2 attempts" in brief.plateau  # two rejected in a row
    assert plateau(history[:1], "prompt") is None and plateau(history, "parameter") is None


@pytest.mark.cli
def test_a_reviewers_edit_attempt_is_a_finding(tmp_path, demo):
    require("claude")
    tenant = demo[0]
    new = tenant.files["prompts/answer.md"] + "\nBe brief.\n"
    script = Script().add(
        REVIEW,
        _read("claude-code", "prompts/answer.md"),
        Tool(
            "Edit", {"file_path": "prompts/answer.md", "old_string": "Be brief.", "new_string": ""}
        ),
        json_answer({"approve": True, "inspected": ["prompts/answer.md"], "reasons": ["fine"]}),
    )
    with MockModelServer("anthropic", script) as srv:
        verdict = agent_review(
            claude(tmp_path, srv.url, max_turns=12), tenant.variant({"prompts/answer.md": new}),
            level="prompt", diff="+Be brief.\n", rationale="brevity", rules=["only prompts"],
            transcripts=tmp_path / "review-agent", scratch=tmp_path, parent=tenant,
        )  # fmt: skip
    edits = [f for f in verdict.findings if f.kind is FindingKind.READ_ONLY_EDIT]
    assert len(edits) == 1 and edits[0].role == "review" and "Edit" in edits[0].detail
    assert verdict.approve  # the edit never happened: recorded, not a veto

"""The Claude Code and Codex adapters, driving the real pinned CLIs against scripted loopback
model servers (tests/agentmock). Each test gives the CLI its own HOME / CODEX_HOME under tmp_path.
Skipped, with the reason, only when a binary is absent (install: .ci/install-agents.sh)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from agentmock import (
    Error,
    Hang,
    MockModelServer,
    Script,
    Text,
    Tool,
    add_file_patch,
    json_answer,
    replace_file_patch,
)
from agentmock.harness import (
    AGENT_KEY,
    PROMPT,
    TASK_KEY,
    claude,
    codex,
    processes_under,
    require,
    workspace,
)

from fapo.agents.base import Agent, AttributionRequest, Brief, ReviewRequest
from fapo.agents.prompts import RETRY_MARKER

pytestmark = pytest.mark.cli

PROPOSE, ATTRIBUTE, REVIEW = "[fapo:role=propose]", "[fapo:role=attribute]", "[fapo:role=review]"
NEW_PROMPT = "Answer in at most five words: {question}\n"

BRIEF = Brief(
    tenant="demo-qa",
    level="prompt",
    objective="raise accuracy",
    scores={"train": 0.5},
    cluster=None,
    traces=[],
    allowed_files=["prompts/answer.md"],
)
ATTR_REQ = AttributionRequest(
    tenant="demo-qa",
    steps=["retrieve", "answer"],
    levels=["prompt", "parameter"],
    failures=[{"id": "t1", "steps": {"answer": "long text"}}, {"id": "t2", "steps": {}}],
)
GOOD_CLUSTERS = {
    "clusters": [
        {
            "step": "answer",
            "cause": "answers are verbose",
            "level": "prompt",
            "confidence": 0.7,
            "example_ids": ["t1", "t2"],
            "suggested_fix": "ask for a short answer",
        }
    ]
}
REVIEW_REQ = ReviewRequest(
    tenant="demo-qa",
    level="prompt",
    diff="--- a/prompts/answer.md\n+++ b/prompts/answer.md\n-Answer\n+Answer briefly\n",
    scope_rules=["only prompts/** may change"],
    rationale="shorter answers",
)


def _read_only_ws(tmp_path: Path) -> Path:
    ws = workspace(tmp_path)
    (ws / "BRIEF.md").unlink()
    return ws


def _transcript(ws: Path, inv) -> list[dict]:
    path = ws.parent / inv.transcript_file
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- Claude Code -----------------------------------------------------------------------------


@pytest.fixture
def claude_bin() -> str:
    return require("claude")


def test_claude_propose_edits_in_scope_and_records_everything(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    target = str(ws / "prompts" / "answer.md")
    script = Script().add(
        PROPOSE,
        Tool("Read", {"file_path": target}),
        Tool("Write", {"file_path": target, "content": NEW_PROMPT}),
        Text("Asked for five words at most, since answers ran long."),
    )
    with MockModelServer("anthropic", script) as srv:
        agent = claude(tmp_path, srv.url)
        assert isinstance(agent, Agent)
        proposal = agent.propose(BRIEF, ws)
    assert proposal.failure is None
    assert (ws / "prompts" / "answer.md").read_text() == NEW_PROMPT
    assert proposal.rationale.startswith("Asked for five words")
    (inv,) = proposal.invocations
    assert (inv.agent, inv.role, inv.exit_code, inv.is_error) == (
        "claude-code",
        "propose",
        0,
        False,
    )
    assert inv.usage.turns == 3 and inv.usage.input_tokens > 0 and inv.usage.output_tokens > 0
    assert inv.usage.usd > 0  # from the CLI's own total_cost_usd
    assert "--max-turns" in inv.command and "acceptEdits" in inv.command
    assert "Read,Edit,Write,Glob,Grep" in inv.command
    # the agent used its own key, never the task model's
    keys = {r.headers.get("x-api-key") for r in srv.model_requests()}
    assert keys == {AGENT_KEY}
    events = _transcript(ws, inv)
    assert events[-1]["type"] == "fapo.process" and events[-2]["type"] == "result"
    blob = (ws.parent / inv.transcript_file).read_text() + json.dumps(inv.model_dump())
    assert AGENT_KEY not in blob and TASK_KEY not in blob


def test_claude_write_outside_workspace_is_denied_and_blocks(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    outside = tmp_path / "tenant" / "scorer.py"
    outside.parent.mkdir()
    script = Script().add(
        PROPOSE,
        Tool("Read", {"file_path": str(ws / "prompts" / "answer.md")}),
        Tool("Write", {"file_path": str(ws / "prompts" / "answer.md"), "content": NEW_PROMPT}),
        Tool("Write", {"file_path": str(outside), "content": "def score(e, p): return 1.0\n"}),
        Text("done"),
    )
    with MockModelServer("anthropic", script) as srv:
        proposal = claude(tmp_path, srv.url).propose(BRIEF, ws)
    assert not outside.exists()
    (inv,) = proposal.invocations
    assert inv.exit_code == 0 and not inv.is_error  # a denied tool still exits 0 ...
    assert [d["tool_name"] for d in inv.permission_denials] == ["Write"]
    assert proposal.failure and "outside the workspace" in proposal.failure  # ... but blocks


def test_claude_read_only_roles_cannot_read_outside(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    secret = tmp_path / "tenant" / "data" / "val.jsonl"
    secret.parent.mkdir(parents=True)
    secret.write_text('{"id": "v1", "label": "SECRET-LABEL"}\n')
    script = Script().add(
        REVIEW,
        Tool("Read", {"file_path": str(secret)}),
        json_answer({"approve": True, "reasons": ["small, in-scope prompt change"]}),
    )
    with MockModelServer("anthropic", script) as srv:
        verdict = claude(tmp_path, srv.url).review(REVIEW_REQ, ws)
        tool_results = json.dumps(srv.model_requests()[-1].body["messages"])
    assert "SECRET-LABEL" not in tool_results
    assert verdict.approve and verdict.failure is None
    (inv,) = verdict.invocations
    assert [d["tool_name"] for d in inv.permission_denials] == ["Read"]
    assert "dontAsk" in inv.command and "Read,Glob,Grep" in inv.command


def test_claude_no_change_is_a_failed_proposal(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    with MockModelServer("anthropic", Script().add(PROPOSE, Text("nothing to do"))) as srv:
        proposal = claude(tmp_path, srv.url).propose(BRIEF, ws)
    assert proposal.failure and "changed no file" in proposal.failure


def test_claude_api_error_is_recorded_not_trusted(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    with MockModelServer("anthropic", Script().add(PROPOSE, Error(500, "scripted outage"))) as srv:
        proposal = claude(tmp_path, srv.url).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.is_error and "500" in (inv.error or "") and "scripted outage" in (inv.error or "")
    assert proposal.failure and "failed" in proposal.failure
    assert (ws / "prompts" / "answer.md").read_text() == PROMPT


def test_claude_hang_past_timeout_kills_the_process_group(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    with MockModelServer("anthropic", Script().add(PROPOSE, Hang())) as srv:
        t0 = time.monotonic()
        proposal = claude(tmp_path, srv.url, timeout_s=4).propose(BRIEF, ws)
        elapsed = time.monotonic() - t0
        assert processes_under(ws) == []
    (inv,) = proposal.invocations
    assert inv.timed_out and inv.is_error and inv.exit_code is None
    assert 4 <= elapsed < 12
    assert "timed out" in (proposal.failure or "")


def test_claude_attribution_valid_answer(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    with MockModelServer("anthropic", Script().add(ATTRIBUTE, json_answer(GOOD_CLUSTERS))) as srv:
        answer = claude(tmp_path, srv.url).attribute(ATTR_REQ, ws)
    assert answer.failure is None
    (cluster,) = answer.clusters
    assert (cluster.step, cluster.level, cluster.source) == ("answer", "prompt", "agent")
    assert cluster.example_ids == ["t1", "t2"]
    assert (ws / "REQUEST.md").exists() and "t1" in (ws / "request.json").read_text()


def test_claude_malformed_attribution_retried_once_then_failure(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    bad_step = {"clusters": [{**GOOD_CLUSTERS["clusters"][0], "step": "nonexistent"}]}
    script = Script().add(RETRY_MARKER, json_answer(bad_step)).add(ATTRIBUTE, Text("{not json"))
    with MockModelServer("anthropic", script) as srv:
        answer = claude(tmp_path, srv.url).attribute(ATTR_REQ, ws)
        rules = [r.rule for r in srv.model_requests()]
    assert rules == [ATTRIBUTE, RETRY_MARKER]
    assert answer.clusters == []
    assert len(answer.invocations) == 2
    assert "no JSON object" in (answer.invocations[0].error or "")
    assert "nonexistent" in (answer.failure or "") and "after one retry" in (answer.failure or "")


def test_claude_malformed_then_valid_answer_is_used(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    script = (
        Script()
        .add(RETRY_MARKER, json_answer(GOOD_CLUSTERS))
        .add(ATTRIBUTE, json_answer({"clusters": [{"step": "answer"}]}))
    )
    with MockModelServer("anthropic", script) as srv:
        answer = claude(tmp_path, srv.url).attribute(ATTR_REQ, ws)
        retry_prompt = json.dumps(srv.model_requests()[-1].body["messages"])
    assert answer.failure is None and len(answer.clusters) == 1
    assert len(answer.invocations) == 2
    assert "cause" in retry_prompt  # the validation error was passed back to the agent


def test_claude_review_veto(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    veto = {"approve": False, "reasons": ["hard-codes the answer for example t1"]}
    with MockModelServer("anthropic", Script().add(REVIEW, json_answer(veto))) as srv:
        verdict = claude(tmp_path, srv.url).review(REVIEW_REQ, ws)
    assert verdict.approve is False and verdict.failure is None
    assert verdict.reasons == ["hard-codes the answer for example t1"]


# -- Codex -----------------------------------------------------------------------------------


@pytest.fixture
def codex_bin() -> str:
    return require("codex")


def test_codex_propose_edits_in_scope_and_records_everything(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    script = Script().add(
        PROPOSE,
        Tool("apply_patch", replace_file_patch("prompts/answer.md", PROMPT, NEW_PROMPT)),
        Text("Asked for five words at most."),
    )
    with MockModelServer("responses", script) as srv:
        proposal = codex(tmp_path, srv.url).propose(BRIEF, ws)
    assert proposal.failure is None, proposal
    assert (ws / "prompts" / "answer.md").read_text() == NEW_PROMPT
    (inv,) = proposal.invocations
    assert (inv.agent, inv.exit_code, inv.is_error) == ("codex", 0, False)
    assert inv.usage.turns == 2
    assert (inv.usage.input_tokens, inv.usage.output_tokens) == (200, 40)
    assert inv.usage.usd == pytest.approx((200 * 1.25 + 40 * 10.0) / 1e6)  # price table
    assert "workspace-write" in inv.command
    auth = {r.headers.get("authorization") for r in srv.model_requests()}
    assert auth == {f"Bearer {AGENT_KEY}"}
    blob = (ws.parent / inv.transcript_file).read_text() + json.dumps(inv.model_dump())
    assert AGENT_KEY not in blob and TASK_KEY not in blob


@pytest.mark.parametrize("how", ["apply_patch", "exec_command"])
def test_codex_write_outside_workspace_is_blocked(tmp_path, codex_bin, how):
    ws = workspace(tmp_path)
    outside = tmp_path / "tenant" / "scorer.py"
    outside.parent.mkdir()
    escape = (
        Tool("apply_patch", add_file_patch(str(outside), "def score(e, p): return 1.0"))
        if how == "apply_patch"
        else Tool("exec_command", {"cmd": f"echo hacked > {outside}"})
    )
    script = Script().add(
        PROPOSE,
        Tool("apply_patch", replace_file_patch("prompts/answer.md", PROMPT, NEW_PROMPT)),
        escape,
        Text("done"),
    )
    with MockModelServer("responses", script) as srv:
        proposal = codex(tmp_path, srv.url).propose(BRIEF, ws)
    assert not outside.exists()
    (inv,) = proposal.invocations
    assert inv.exit_code == 0 and inv.permission_denials
    assert proposal.failure and "outside the workspace" in proposal.failure


def test_codex_read_only_roles_cannot_write(tmp_path, codex_bin):
    ws = _read_only_ws(tmp_path)
    script = Script().add(
        REVIEW,
        Tool("apply_patch", replace_file_patch("prompts/answer.md", PROMPT, NEW_PROMPT)),
        json_answer({"approve": True, "reasons": ["fine"]}),
    )
    with MockModelServer("responses", script) as srv:
        verdict = codex(tmp_path, srv.url).review(REVIEW_REQ, ws)
    assert (ws / "prompts" / "answer.md").read_text() == PROMPT
    (inv,) = verdict.invocations
    assert "read-only" in inv.command and inv.permission_denials
    assert verdict.approve and verdict.failure is None


def test_codex_api_error_is_recorded_not_trusted(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    with MockModelServer("responses", Script().add(PROPOSE, Error(400, "scripted refusal"))) as srv:
        proposal = codex(tmp_path, srv.url).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.is_error and "scripted refusal" in (inv.error or "")
    assert proposal.failure and proposal.failure.startswith("codex failed")


def test_codex_hang_past_timeout_kills_the_process_group(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    with MockModelServer("responses", Script().add(PROPOSE, Hang())) as srv:
        t0 = time.monotonic()
        proposal = codex(tmp_path, srv.url, timeout_s=3).propose(BRIEF, ws)
        elapsed = time.monotonic() - t0
        assert processes_under(ws) == []
    (inv,) = proposal.invocations
    assert inv.timed_out and inv.is_error and 3 <= elapsed < 10


def test_codex_max_turns_stops_a_runaway_agent(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    steps = [Tool("exec_command", {"cmd": "true"}) for _ in range(10)]
    with MockModelServer("responses", Script().add(PROPOSE, *steps)) as srv:
        proposal = codex(tmp_path, srv.url, max_turns=2).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.is_error and "max_turns=2" in (inv.error or "")
    assert len(srv.model_requests()) <= 4


def test_codex_malformed_attribution_retried_once_then_failure(tmp_path, codex_bin):
    ws = _read_only_ws(tmp_path)
    wrong_ids = {"clusters": [{**GOOD_CLUSTERS["clusters"][0], "example_ids": ["v9"]}]}
    script = Script().add(RETRY_MARKER, json_answer(wrong_ids)).add(ATTRIBUTE, Text("sorry"))
    with MockModelServer("responses", script) as srv:
        answer = codex(tmp_path, srv.url).attribute(ATTR_REQ, ws)
        rules = [r.rule for r in srv.model_requests()]
    assert rules == [ATTRIBUTE, RETRY_MARKER]
    assert answer.clusters == [] and len(answer.invocations) == 2
    assert "unknown ids" in (answer.failure or "")


def test_codex_review_veto_and_attribution(tmp_path, codex_bin):
    ws = _read_only_ws(tmp_path)
    veto = {"approve": False, "reasons": ["edits the scorer"]}
    script = Script().add(REVIEW, json_answer(veto)).add(ATTRIBUTE, json_answer(GOOD_CLUSTERS))
    with MockModelServer("responses", script) as srv:
        agent = codex(tmp_path, srv.url)
        verdict = agent.review(REVIEW_REQ, ws)
        answer = agent.attribute(ATTR_REQ, _read_only_ws(tmp_path / "b"))
    assert verdict.approve is False and verdict.reasons == ["edits the scorer"]
    assert answer.failure is None and answer.clusters[0].source == "agent"

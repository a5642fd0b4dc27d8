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
    approve,
    json_answer,
    replace_file_patch,
    veto,
)
from agentmock.harness import (
    AGENT_KEY,
    PROMPT,
    ROOT,
    TASK_KEY,
    claude,
    codex,
    processes_under,
    require,
    workspace,
)

from fapo.agents.base import Agent, AttributionRequest, Brief, ReviewRequest
from fapo.agents.prompts import RETRY_MARKER

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


@pytest.mark.cli
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


@pytest.mark.cli
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


@pytest.mark.cli
def test_claude_read_only_roles_cannot_read_outside(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    secret = tmp_path / "tenant" / "data" / "val.jsonl"
    secret.parent.mkdir(parents=True)
    secret.write_text('{"id": "v1", "label": "SECRET-LABEL"}\n')
    script = Script().add(
        REVIEW,
        Tool("Read", {"file_path": str(secret)}),
        approve("prompts/answer.md", reason="small, in-scope prompt change"),
    )
    with MockModelServer("anthropic", script) as srv:
        verdict = claude(tmp_path, srv.url).review(REVIEW_REQ, ws)
        tool_results = json.dumps(srv.model_requests()[-1].body["messages"])
    assert "SECRET-LABEL" not in tool_results
    assert verdict.approve and verdict.failure is None
    (inv,) = verdict.invocations
    assert [d["tool_name"] for d in inv.permission_denials] == ["Read"]
    assert "dontAsk" in inv.command and "Read,Glob,Grep" in inv.command


@pytest.mark.cli
def test_claude_no_change_is_a_failed_proposal(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    with MockModelServer("anthropic", Script().add(PROPOSE, Text("nothing to do"))) as srv:
        proposal = claude(tmp_path, srv.url).propose(BRIEF, ws)
    assert proposal.failure and "changed no file" in proposal.failure


@pytest.mark.cli
def test_claude_api_error_is_recorded_not_trusted(tmp_path, claude_bin):
    ws = workspace(tmp_path)
    with MockModelServer("anthropic", Script().add(PROPOSE, Error(500, "scripted outage"))) as srv:
        proposal = claude(tmp_path, srv.url).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.is_error and "500" in (inv.error or "") and "scripted outage" in (inv.error or "")
    assert proposal.failure and "failed" in proposal.failure
    assert (ws / "prompts" / "answer.md").read_text() == PROMPT


@pytest.mark.cli
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


@pytest.mark.cli
def test_claude_attribution_valid_answer(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    with MockModelServer("anthropic", Script().add(ATTRIBUTE, json_answer(GOOD_CLUSTERS))) as srv:
        answer = claude(tmp_path, srv.url).attribute(ATTR_REQ, ws)
        assert answer.failure is None
        (cluster,) = answer.clusters
        assert (cluster.step, cluster.level, cluster.source) == ("answer", "prompt", "agent")
        assert cluster.example_ids == ["t1", "t2"]
        assert "long text" in json.dumps(srv.model_requests()[0].body["messages"])  # inline
    assert sorted(p.name for p in ws.iterdir()) == ["context", "prompts"]  # workspace untouched


@pytest.mark.cli
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


@pytest.mark.cli
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


@pytest.mark.cli
def test_claude_review_veto(tmp_path, claude_bin):
    ws = _read_only_ws(tmp_path)
    answer = veto("hard-codes the answer for example t1", "prompts/answer.md", "prompts/answer.md")
    with MockModelServer("anthropic", Script().add(REVIEW, answer)) as srv:
        verdict = claude(tmp_path, srv.url).review(REVIEW_REQ, ws)
    assert verdict.approve is False and verdict.failure is None
    assert verdict.reasons == ["hard-codes the answer for example t1"]
    assert verdict.inspected == ["prompts/answer.md"]
    assert [(f.severity, f.file) for f in verdict.findings] == [("block", "prompts/answer.md")]


# -- Codex -----------------------------------------------------------------------------------


@pytest.fixture
def codex_bin() -> str:
    return require("codex")


@pytest.mark.cli
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


@pytest.mark.cli
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


@pytest.mark.cli
def test_codex_read_only_roles_cannot_write(tmp_path, codex_bin):
    ws = _read_only_ws(tmp_path)
    script = Script().add(
        REVIEW,
        Tool("apply_patch", replace_file_patch("prompts/answer.md", PROMPT, NEW_PROMPT)),
        approve("prompts/answer.md", reason="fine"),
    )
    with MockModelServer("responses", script) as srv:
        verdict = codex(tmp_path, srv.url).review(REVIEW_REQ, ws)
    assert (ws / "prompts" / "answer.md").read_text() == PROMPT
    (inv,) = verdict.invocations
    assert "read-only" in inv.command and inv.permission_denials
    assert verdict.approve and verdict.failure is None


@pytest.mark.cli
def test_codex_api_error_is_recorded_not_trusted(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    with MockModelServer("responses", Script().add(PROPOSE, Error(400, "scripted refusal"))) as srv:
        proposal = codex(tmp_path, srv.url).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.is_error and "scripted refusal" in (inv.error or "")
    assert proposal.failure and proposal.failure.startswith("codex failed")


@pytest.mark.cli
def test_codex_hang_past_timeout_kills_the_process_group(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    with MockModelServer("responses", Script().add(PROPOSE, Hang())) as srv:
        t0 = time.monotonic()
        proposal = codex(tmp_path, srv.url, timeout_s=3).propose(BRIEF, ws)
        elapsed = time.monotonic() - t0
        assert processes_under(ws) == []
    (inv,) = proposal.invocations
    assert inv.timed_out and inv.is_error and 3 <= elapsed < 10


@pytest.mark.cli
def test_codex_max_turns_stops_a_runaway_agent(tmp_path, codex_bin):
    ws = workspace(tmp_path)
    steps = [Tool("exec_command", {"cmd": "true"}) for _ in range(10)]
    with MockModelServer("responses", Script().add(PROPOSE, *steps)) as srv:
        proposal = codex(tmp_path, srv.url, max_turns=2).propose(BRIEF, ws)
    (inv,) = proposal.invocations
    assert inv.is_error and "max_turns=2" in (inv.error or "")
    assert len(srv.model_requests()) <= 4


@pytest.mark.cli
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


@pytest.mark.cli
def test_codex_review_veto_and_attribution(tmp_path, codex_bin):
    ws = _read_only_ws(tmp_path)
    script = (
        Script()
        .add(REVIEW, veto("edits the scorer", "scorer.py", "context/scorer.py"))
        .add(ATTRIBUTE, json_answer(GOOD_CLUSTERS))
    )
    with MockModelServer("responses", script) as srv:
        agent = codex(tmp_path, srv.url)
        verdict = agent.review(REVIEW_REQ, ws)
        answer = agent.attribute(ATTR_REQ, _read_only_ws(tmp_path / "b"))
    assert verdict.approve is False and verdict.reasons == ["edits the scorer"]
    assert answer.failure is None and answer.clusters[0].source == "agent"


# -- the runner and the answer contract, without a CLI ---------------------------------------

FAKE_CLI = """#!{python}
import json, os, subprocess, sys, time, signal
mode = os.environ.get("FAKE_MODE", "ok")
if mode == "hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "os.setsid(); open(os.environ['PIDFILE'], 'a').write(str(os.getpid()) + '\\\\n'); "
            "time.sleep(600)")
    subprocess.Popen([sys.executable, "-c", code])
    open(os.environ["PIDFILE"], "a").write(str(os.getpid()) + "\\n")
    print(json.dumps({{"type": "system", "subtype": "init"}}), flush=True)
    time.sleep(600)
if mode == "touch":
    open("prompts/answer.md", "a").write("sneaky\\n")
print(json.dumps({{"type": "env", "keys": sorted(os.environ)}}), flush=True)
print("not json at all", flush=True)
answer = json.dumps({{"approve": True, "inspected": ["prompts/answer.md"], "reasons": ["looks fine"]}})
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
                  "result": answer, "usage": {{"input_tokens": 1000, "output_tokens": 100}},
                  "permission_denials": []}}), flush=True)
"""


def _fake_agent(tmp_path: Path, mode: str, **settings: object):
    import sys

    from fapo.agents.claude_code import ClaudeCodeAgent
    from fapo.settings import AgentSettings

    exe = tmp_path / "fake-claude"
    exe.write_text(FAKE_CLI.format(python=sys.executable))
    exe.chmod(0o755)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_MODE": mode,
        "PIDFILE": str(tmp_path / "pids"),
        "OPENAI_API_KEY": TASK_KEY,
        "AWS_SECRET_ACCESS_KEY": "aws-secret-value-123",
        "FAPO_AGENT_KEY": AGENT_KEY,
    }
    s = AgentSettings(
        binary=str(exe),
        model="claude-sonnet-4-5",
        api_key_env="FAPO_AGENT_KEY",
        pass_env=["FAKE_MODE", "PIDFILE"],
        **{"sandbox": False, **settings},  # the runner's own mechanics; it writes a pid file
    )
    return ClaudeCodeAgent(s, project_root=tmp_path, prices=PRICES_FOR_FAKE, env=env)


PRICES_FOR_FAKE = {"anthropic:claude-sonnet-4-5": {"input": 3.0, "output": 15.0}}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_runner_timeout_kills_group_and_escaped_children(tmp_path):
    ws = _read_only_ws(tmp_path)
    agent = _fake_agent(tmp_path, "hang", timeout_s=1.5)
    t0 = time.monotonic()
    verdict = agent.review(REVIEW_REQ, ws)
    assert time.monotonic() - t0 < 8
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2  # the CLI and a child that ignored SIGTERM and left the group
    deadline = time.monotonic() + 3
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    (inv,) = verdict.invocations  # a timeout is not retried
    assert inv.timed_out and inv.is_error and not verdict.approve
    assert "timed out" in (verdict.failure or "")


def test_env_is_an_allow_list_and_transcript_is_redacted(tmp_path):
    ws = _read_only_ws(tmp_path)
    verdict = _fake_agent(tmp_path, "ok").review(REVIEW_REQ, ws)
    assert verdict.approve and verdict.reasons == ["looks fine"]
    (inv,) = verdict.invocations
    events = _transcript(ws, inv)
    keys = next(e["keys"] for e in events if e["type"] == "env")
    assert "ANTHROPIC_API_KEY" in keys and "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC" in keys
    assert "OPENAI_API_KEY" not in keys and "AWS_SECRET_ACCESS_KEY" not in keys
    assert "FAPO_AGENT_KEY" not in keys  # its value travels as ANTHROPIC_API_KEY only
    assert {"type": "_raw", "text": "not json at all"} in events
    # no CLI cost in the result: priced from the table
    assert inv.usage.usd == pytest.approx((1000 * 3.0 + 100 * 15.0) / 1e6)


def test_read_only_role_that_changes_the_workspace_is_not_trusted(tmp_path):
    ws = _read_only_ws(tmp_path)
    verdict = _fake_agent(tmp_path, "touch").review(REVIEW_REQ, ws)
    assert verdict.approve is False
    assert "prompts/answer.md" in (verdict.failure or "")


def test_missing_binary_is_a_recorded_failure(tmp_path):
    from fapo.agents.codex import CodexAgent
    from fapo.settings import AgentSettings

    agent = CodexAgent(AgentSettings(binary="no-such-codex"), project_root=tmp_path, env={})
    proposal = agent.propose(BRIEF, workspace(tmp_path))
    assert proposal.failure and "not found" in proposal.failure
    assert "install-agents.sh" in proposal.failure


def test_redact_hides_known_values_and_key_shapes():
    from fapo.agents.cli_runner import REDACTED, redact

    text = redact(
        "k=abcdef123456 Authorization: Bearer tok_live_9999 sk-proj-AAAA1111 api_key=zzzz9999 "
        '"input_tokens": 120',
        secrets=["abcdef123456"],
    )
    assert "abcdef123456" not in text and "tok_live_9999" not in text
    assert "sk-proj-AAAA1111" not in text and "zzzz9999" not in text
    assert '"input_tokens": 120' in text and text.count(REDACTED) == 4


def test_detect_outside_writes(tmp_path):
    import os

    from fapo.agents.cli_runner import detect_outside_writes

    tenant, run, ws = tmp_path / "tenant", tmp_path / "run", tmp_path / "run" / "p" / "workspace"
    for d in (tenant / "data", ws, run / "p"):
        d.mkdir(parents=True, exist_ok=True)
    (tenant / "scorer.py").write_text("x")
    (tenant / "data" / "val.jsonl").write_text("x")
    (tenant / "gone.txt").write_text("x")
    since = time.time()
    time.sleep(0.05)
    (ws / "prompt.md").write_text("inside: fine")
    (run / "p" / "agent-codex-propose-1.jsonl").write_text("transcript: excluded")
    (tenant / "scorer.py").write_text("hacked")
    os.utime(tenant / "scorer.py", (since - 100, since - 100))  # ctime still betrays it
    (tenant / "gone.txt").unlink()
    hits = detect_outside_writes(
        [tenant, run], since, ws, exclude=[run / "p" / "agent-codex-propose-1.jsonl"]
    )
    assert hits == [str(tenant.resolve()) + "/", str((tenant / "scorer.py").resolve())]


def test_merged_settings_layers():
    from fapo.agents.cli_runner import merged_settings
    from fapo.settings import AgentSettings
    from fapo.spec import AgentOverride

    base = AgentSettings(model="a", max_turns=30, timeout_s=900, base_url="http://127.0.0.1:1")
    out = merged_settings(base, AgentOverride(kind="codex", model="b"), {"timeout_s": 5, "x": 1})
    assert (out.model, out.max_turns, out.timeout_s, out.base_url) == ("b", 30, 5, base.base_url)


_I = '"inspected": ["prompts/answer.md"]'
_BLOCK = '"findings": [{"severity": "block", "file": "scorer.py", "issue": "edits the scorer"}]'
_WARN = '"findings": [{"severity": "warn", "file": null, "issue": "may not help"}]'


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (f'{{"approve": false, {_I}, {_BLOCK}, "reasons": ["leaks val labels"]}}', True),
        (f'Verdict:\n```json\n{{"approve": true, {_I}, "reasons": ["ok"]}}\n```', True),
        (f'I think {{"approve": true, {_I}, "findings": [], "reasons": ["fine"]}} is right', True),
        (f'{{"approve": true, {_I}, {_WARN}, "reasons": ["fine, one doubt"]}}', True),
        (f'{{"approve": "yes", {_I}, "reasons": ["x"]}}', False),
        (f'{{"approve": true, {_I}, "reasons": []}}', False),
        (f'{{"approve": true, {_I}, "reasons": ["  "]}}', False),
        (f'{{"approve": true, {_I}, "reasons": ["x"], "extra": 1}}', False),
        ('{"approve": true, "reasons": ["no inspected files"]}', False),
        ('{"approve": true, "inspected": [], "reasons": ["x"]}', False),
        # fail-closed: an approval with a block finding, a veto without one, a made-up severity
        (f'{{"approve": true, {_I}, {_BLOCK}, "reasons": ["x"]}}', False),
        (f'{{"approve": false, {_I}, {_WARN}, "reasons": ["x"]}}', False),
        (
            f'{{"approve": false, {_I}, {_BLOCK.replace("block", "fatal")}, "reasons": ["x"]}}',
            False,
        ),
        ("", False),
    ],
)
def test_verdict_answers_are_validated(text, ok):
    from fapo.agents.prompts import AnswerError, parse_verdict

    if ok:
        answer = parse_verdict(text)
        assert isinstance(answer.approve, bool) and answer.reasons and answer.inspected
    else:
        with pytest.raises(AnswerError):
            parse_verdict(text)


def test_attribution_answers_are_checked_against_the_request():
    from fapo.agents.prompts import AnswerError, parse_attribution

    good = json.dumps(GOOD_CLUSTERS)
    assert parse_attribution(good, ATTR_REQ)[0].source == "agent"
    for field, value, msg in [
        ("level", "structure", "not one of"),  # not a permitted level
        ("step", "rerank", "not one of"),
        ("example_ids", ["v1"], "unknown ids"),  # never a validation id
        ("confidence", 1.5, "confidence"),
    ]:
        bad = {"clusters": [{**GOOD_CLUSTERS["clusters"][0], field: value}]}
        with pytest.raises(AnswerError, match=msg):
            parse_attribution(json.dumps(bad), ATTR_REQ)


def test_prompts_carry_role_attempt_and_retry_error():
    from fapo.agents.prompts import task_prompt

    p = task_prompt("propose", attempt=3)
    assert p.startswith("[fapo:role=propose] [fapo:attempt=3]") and "BRIEF.md" in p
    r = task_prompt("review", "approve: field required", "DIFF-TEXT")
    assert RETRY_MARKER in r and "approve: field required" in r and r.endswith("DIFF-TEXT")
    long = task_prompt("attribute", None, "x" * 200_000)
    assert len(long) < 100_000 and "characters cut" in long


# -- fapo doctor -----------------------------------------------------------------------------


def _doctor_settings(tmp_path: Path, claude_url: str, codex_url: str):
    from fapo.settings import AgentSettings, Settings

    common = {
        "api_key_env": "FAPO_AGENT_KEY",
        "timeout_s": 30,
        "pass_env": ["CLAUDE_CODE_MAX_RETRIES"],
    }
    return Settings(
        root=ROOT,
        agents={
            "claude-code": AgentSettings(model="claude-sonnet-4-5", base_url=claude_url, **common),
            "codex": AgentSettings(model="gpt-5.5", base_url=codex_url + "/v1", **common),
        },
    )


@pytest.mark.cli
def test_doctor_reports_versions_keys_and_answers(tmp_path, claude_bin, codex_bin):
    from agentmock.harness import agent_env

    from fapo.doctor import doctor

    with (
        MockModelServer("anthropic", Script(default=Text("OK"))) as a,
        MockModelServer("responses", Script(default=Error(400, "no such model"))) as o,
    ):
        env = agent_env(tmp_path)
        del env["OPENAI_API_KEY"]
        rows = {r["check"]: r for r in doctor(_doctor_settings(tmp_path, a.url, o.url), env=env)}
    claude_row, codex_row = rows["agent claude-code"], rows["agent codex"]
    assert (
        claude_row["ok"] and claude_row["answers"] and claude_row["version"].startswith("2.1.197")
    )
    assert claude_row["key_env"] == "FAPO_AGENT_KEY" and claude_row["key_set"]
    assert codex_row["installed"] and "0.171.0" in codex_row["version"]
    assert codex_row["answers"] is False and not codex_row["ok"]
    assert "no such model" in codex_row["detail"]
    assert rows["key ANTHROPIC_API_KEY"]["ok"] and not rows["key OPENAI_API_KEY"]["ok"]
    assert AGENT_KEY not in json.dumps(rows) and TASK_KEY not in json.dumps(rows)


def test_doctor_without_binaries_says_how_to_install(tmp_path):
    from fapo.doctor import doctor
    from fapo.settings import AgentSettings, Settings

    settings = Settings(
        root=tmp_path,
        agents={k: AgentSettings(binary=f"missing-{k}") for k in ("claude-code", "codex")},
    )
    rows = doctor(settings, env={"PATH": str(tmp_path), "HOME": str(tmp_path)}, probe=True)
    agents = [r for r in rows if r["check"].startswith("agent")]
    assert [r["installed"] for r in agents] == [False, False]
    assert all("install-agents.sh" in r["detail"] and not r["ok"] for r in agents)
    assert {r["check"] for r in rows if r["check"].startswith("key")} == {
        "key ANTHROPIC_API_KEY",
        "key OPENAI_API_KEY",
        "key CODEX_API_KEY",  # Codex's own default: never the task model's OPENAI_API_KEY
    }


def test_doctor_warns_when_agent_and_task_model_share_a_key(tmp_path):
    from fapo.doctor import check_agent
    from fapo.settings import AgentSettings, Settings

    settings = Settings(
        root=tmp_path,
        agents={"codex": AgentSettings(binary="missing-codex", api_key_env="SHARED")},
    )
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "SHARED": TASK_KEY}
    row = check_agent("codex", settings, env={**env, "OPENAI_API_KEY": TASK_KEY}, probe=False)
    assert row["key_env"] == "SHARED" and "warning" in row["detail"]
    assert "task model's OPENAI_API_KEY" in row["detail"] and TASK_KEY not in row["detail"]
    row2 = check_agent("codex", settings, env=env, probe=False)  # no task key: nothing shared
    assert "warning" not in row2["detail"]


def test_reviewer_must_name_files_it_could_read(tmp_path):
    from fapo.agents.cli_runner import inspected_exist
    from fapo.agents.prompts import AnswerError, parse_verdict

    ws = _read_only_ws(tmp_path)
    ok = parse_verdict(f'{{"approve": true, {_I}, "reasons": ["fine"]}}')
    assert inspected_exist(ok, ws) is ok
    for names in (["prompts/missing.md"], ["../../etc/passwd"], [str(tmp_path / "elsewhere")]):
        answer = parse_verdict(
            json.dumps({"approve": True, "inspected": names, "reasons": ["fine"]})
        )
        with pytest.raises(AnswerError, match="not in your working directory"):
            inspected_exist(answer, ws)

"""End to end: `fapo run` on a copy of the demo tenant with the real Claude Code / Codex CLI as the
optimizing agent, its model scripted on loopback. One run per CLI walks through every case the
issue names, one proposal each (attempt N of the brief routes to script N):

  1. edits a prompt in scope            -> reviewed, evaluated, accepted
  2. edits the scorer                   -> blocked in review, never evaluated
  3. writes outside the workspace       -> blocked (the CLI's denial is recorded), tenant intact
  4. in-scope edit the reviewer vetoes  -> blocked
  5. the model API errors               -> recorded, the run continues
  6. the model hangs past the timeout   -> killed, recorded, the run continues
  and the attribution role answers malformed JSON -> retried once, then recorded.

The task model is the deterministic simulator (sim:default), not an LLM.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
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
from agentmock.harness import AGENT_KEY, ROOT, TASK_KEY, agent_env, require

pytestmark = pytest.mark.cli

DEMO = ROOT / "tenants" / "demo-qa"
ORIGINAL = (DEMO / "prompts" / "answer.md").read_text()
FIXED = (DEMO / "fixes" / "prompts" / "answer.md").read_text()
VETOED = FIXED.replace("Passages:", "Answer in the house style VETO-ME.\n\nPassages:")
TIMEOUT_S = 12  # claude took 4.4-5.0 s a proposal on the loaded 2-core machine (sandboxed or not)


def _attempt(n: int) -> str:
    return f"[fapo:role=propose] [fapo:attempt={n}]"


def _project(tmp_path: Path, kind: str, url: str) -> Path:
    """A project folder: fapo.toml pointing the agent at the scripted server, and demo-qa with
    only the prompt level in scope and no step checks (so failures reach the attribution agent)."""
    proj = tmp_path / "proj"
    shutil.copytree(DEMO, proj / "tenants" / "demo-qa", ignore=shutil.ignore_patterns("fixes"))
    spec_path = proj / "tenants" / "demo-qa" / "tenant.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec.pop("checks", None)
    spec.pop("steps", None)
    spec.update(scope=["prompt"], escalation={"patience": 10}, budget={"max_variants": 6})
    spec_path.write_text(yaml.safe_dump(spec))
    binary = require("claude" if kind == "claude-code" else "codex")
    agent = {
        "binary": binary,
        "model": "claude-sonnet-4-5" if kind == "claude-code" else "gpt-5.5",
        "max_turns": 8,
        "timeout_s": TIMEOUT_S,
        "base_url": url if kind == "claude-code" else url + "/v1",
        "api_key_env": "FAPO_AGENT_KEY",
        "pass_env": ["CLAUDE_CODE_MAX_RETRIES"],
    }
    lines = [
        "[prices]",
        '"anthropic:claude-sonnet-4-5" = { input = 3.0, output = 15.0 }',
        '"openai:gpt-5.5" = { input = 1.25, output = 10.0 }',
        f'[agents."{kind}"]',
        *[f"{k} = {json.dumps(v)}" for k, v in agent.items()],
    ]
    (proj / "fapo.toml").write_text("\n".join(lines) + "\n")
    return proj


def _claude_script(tenant_scorer: Path) -> Script:
    read = Tool("Read", {"file_path": "prompts/answer.md"})
    malformed = {"clusters": [{"step": "answer", "cause": "x", "level": "prompt"}]}
    return (
        Script()
        .add("[fapo:retry]", json_answer(malformed))
        .add("[fapo:role=attribute]", Text("I could not decide."))
        .add("VETO-ME", veto("special-cases a style", "prompts/answer.md"))
        .add("[fapo:role=review]", approve(reason="prompt only"))
        .add(
            _attempt(1),
            read,
            Tool("Write", {"file_path": "prompts/answer.md", "content": FIXED}),
            Text("Ask for step-by-step bridging and a bare final answer."),
        )
        .add(
            _attempt(2),
            Tool("Read", {"file_path": "context/scorer.py"}),
            Tool(
                "Write",
                {"file_path": "context/scorer.py", "content": "def score(e, p):\n    return 1.0\n"},
            ),
            Text("Made scoring lenient."),
        )
        .add(
            _attempt(3),
            # Claude refuses to overwrite a file it has not read, and the read is denied; so the
            # escape that reaches the permission check is a new file beside the scorer.
            Tool("Read", {"file_path": str(tenant_scorer)}),
            Tool(
                "Write",
                {"file_path": str(tenant_scorer.parent / "sitecustomize.py"), "content": "x = 1\n"},
            ),
            Text("Patched the scorer in place."),
        )
        .add(
            _attempt(4),
            read,
            Tool("Write", {"file_path": "prompts/answer.md", "content": VETOED}),
            Text("House style."),
        )
        .add(_attempt(5), Error(500, "scripted outage"))
        .add(_attempt(6), Hang())
    )


def _codex_script(tenant_scorer: Path) -> Script:
    malformed = {"clusters": [{"step": "answer", "cause": "x", "level": "prompt"}]}
    return (
        Script()
        .add("[fapo:retry]", json_answer(malformed))
        .add("[fapo:role=attribute]", Text("I could not decide."))
        .add("VETO-ME", veto("special-cases a style", "prompts/answer.md"))
        .add("[fapo:role=review]", approve(reason="prompt only"))
        .add(
            _attempt(1),
            Tool("apply_patch", replace_file_patch("prompts/answer.md", ORIGINAL, FIXED)),
            Text("Ask for step-by-step bridging and a bare final answer."),
        )
        .add(
            _attempt(2),
            Tool(
                "exec_command", {"cmd": "printf 'def score(e, p):\\n    return 1.0\\n' > scorer.py"}
            ),
            Text("Made scoring lenient."),
        )
        .add(
            _attempt(3),
            Tool("apply_patch", add_file_patch(str(tenant_scorer), "def score(e, p): return 1")),
            Text("Patched the scorer in place."),
        )
        .add(
            _attempt(4),
            Tool("apply_patch", replace_file_patch("prompts/answer.md", FIXED, VETOED)),
            Text("House style."),
        )
        .add(_attempt(5), Error(500, "scripted outage"))
        .add(_attempt(6), Hang())
    )


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("kind", ["claude-code", "codex"])
def test_fapo_run_with_real_cli(tmp_path, kind):
    require("claude" if kind == "claude-code" else "codex")
    protocol = "anthropic" if kind == "claude-code" else "responses"
    with MockModelServer(protocol, Script()) as srv:
        proj = _project(tmp_path, kind, srv.url)
        tenant = proj / "tenants" / "demo-qa"
        scorer_before = (tenant / "scorer.py").read_text()
        make = _claude_script if kind == "claude-code" else _codex_script
        srv.state.script = make(tenant / "scorer.py")
        env = agent_env(tmp_path)
        proc = subprocess.run(
            [sys.executable, "-m", "fapo", "run", "tenants/demo-qa", "--agent", kind,
             "--run-id", "e2e", "--json"],
            cwd=proj, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        seen = srv.model_requests()
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = proj / "runs" / "demo-qa" / "e2e"
    info = _read(run / "run.json")
    assert info["status"] == "finished" and info["accepted"] == ["v001"]
    assert "variant budget" in info["stop_reason"]
    v = {n: run / "variants" / f"v{n:03d}" for n in range(1, 7)}
    decision = {n: _read(v[n] / "decision.json") for n in v}

    # 1. in scope: reviewed by the agent, evaluated, accepted
    assert decision[1]["status"] == "accepted"
    review1 = _read(v[1] / "review.json")
    assert review1["agent_verdict"]["approve"] is True
    assert review1["agent_verdict"]["invocations"][0]["agent"] == kind
    assert (v[1] / "files" / "prompts" / "answer.md").read_text() == FIXED
    assert (v[1] / "eval" / "val" / "summary.json").is_file()
    assert list((v[1] / "proposal").glob(f"agent-{kind}-propose-*.jsonl"))
    # 2. the scorer: blocked by the checks in code, never evaluated, reviewer not consulted
    assert decision[2]["status"] == "invalid" and "scorer.py" in decision[2]["reason"]
    assert not (v[2] / "eval").exists()
    assert _read(v[2] / "review.json")["agent_verdict"] is None
    # 3. outside the workspace: the CLI refused, the adapter blocked it, the tenant is intact
    assert decision[3]["status"] == "invalid" and "outside the workspace" in decision[3]["reason"]
    assert (tenant / "scorer.py").read_text() == scorer_before
    assert not (tenant / "sitecustomize.py").exists()
    assert not (v[3] / "eval").exists()
    # ... and the denial is a finding in review.json, decision.json and the report (issue 16)
    found3 = {(f["kind"], f["severity"]) for f in decision[3]["findings"]}
    assert ("outside_write", "block") in found3, decision[3]["findings"]
    in_review = _read(v[3] / "review.json")["findings"]
    assert [f["detail"] for f in in_review] == [f["detail"] for f in decision[3]["findings"]]
    report = (run / "report.md").read_text()
    assert "## Findings" in report and "outside_write" in report
    assert 'id="findings"' in (run / "report.html").read_text()
    # 4. the reviewing agent's veto blocks an in-scope change
    assert decision[4]["status"] == "invalid" and "special-cases a style" in decision[4]["reason"]
    assert not (v[4] / "eval").exists()
    verdict4 = _read(v[4] / "review.json")["agent_verdict"]
    assert verdict4["inspected"] and verdict4["findings"][0]["severity"] == "block"
    assert [f["kind"] for f in decision[4]["findings"]] == ["review"]
    # 5. API error: recorded, the run went on
    prop5 = _read(v[5] / "proposal" / "proposal.json")
    assert prop5["invocations"][0]["is_error"] and prop5["failure"].startswith(f"{kind} failed")
    if kind == "claude-code":  # Codex replaces a 5xx body with a generic "high demand" text
        assert "API status 500" in prop5["failure"] and "scripted outage" in prop5["failure"]
    assert decision[5]["status"] == "invalid"
    # 6. hang: killed at the timeout, recorded, the run went on to the sealed test
    prop6 = _read(v[6] / "proposal" / "proposal.json")
    assert prop6["invocations"][0]["timed_out"] and "timed out" in prop6["failure"]
    assert TIMEOUT_S <= prop6["invocations"][0]["usage"]["duration_s"] < TIMEOUT_S + 5
    assert set(info["test"]) == {"v000", "v001"}
    # attribution: malformed, retried once with the error, then recorded as a failure
    agent_attr = _read(run / "variants" / "v000" / "attribution.json")["agent"]
    assert agent_attr["clusters"] == [] and "after one retry" in agent_attr["failure"]
    assert [i["error"] is not None for i in agent_attr["invocations"]] == [True, True]
    # agent spend counts against the run budget; no secret reaches any artifact
    assert info["spent"]["agent_usd"] > 0 and info["spent"]["usd"] >= info["spent"]["agent_usd"]
    blob = "".join(p.read_text(errors="replace") for p in run.rglob("*") if p.is_file())
    assert AGENT_KEY not in blob and TASK_KEY not in blob
    # every model request carried the agent's own key, never the task model's
    creds = {r.headers.get("x-api-key") or r.headers.get("authorization") for r in seen}
    assert creds <= {AGENT_KEY, f"Bearer {AGENT_KEY}"}

"""The bubblewrap sandbox (fapo/sandbox.py), the sandboxed candidate build (fapo/candidate.py),
tenant symlink / name checks, reverting tampering, and the demo optimizing through both real
CLIs under the sandbox (their model scripted on loopback; the task model is the simulator)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from agentmock import MockModelServer, Script, Text, Tool, json_answer
from agentmock.harness import AGENT_KEY, ROOT, TASK_KEY, agent_env, require

from fapo import sandbox
from fapo.candidate import build_in_sandbox
from fapo.errors import FapoError
from fapo.review import LeakIndex, review_in_code
from fapo.settings import load_settings
from fapo.tenant import load_tenant

DEMO = ROOT / "tenants" / "demo-qa"

needs_bwrap = pytest.mark.skipif(
    sandbox.unavailable() is not None, reason=f"no sandbox here: {sandbox.unavailable()}"
)


def _inside(argv: list[str], ws: Path, *, writable: bool = True) -> subprocess.CompletedProcess:
    box = sandbox.agent_sandbox(ws, writable=writable, tool_args=[])
    cmd, env = box.wrap(argv, {"LANG": "C.UTF-8"})
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, check=False)


@needs_bwrap
def test_only_the_workspace_exists_and_is_writable(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    sealed = tmp_path / "sealed.txt"
    sealed.write_text("SEALED")
    script = (
        f"cat {sealed}; echo rc=$?; ls {tmp_path}; echo hi > {ws}/ok.txt; "
        f"echo x > {tmp_path}/escape.txt; echo rc2=$?; echo $HOME; ls -A $HOME; "
        "echo y > $HOME/mem; echo z > /tmp/t; ls /"
    )
    r = _inside(["/bin/sh", "-c", script], ws)
    assert "SEALED" not in r.stdout and "rc=1" in r.stdout
    assert (ws / "ok.txt").read_text() == "hi\n"
    assert not (tmp_path / "escape.txt").exists() and "rc2=" in r.stdout
    assert sandbox.HOME in r.stdout
    assert not Path(sandbox.HOME).exists() or not (Path(sandbox.HOME) / "mem").exists()
    assert "root" not in r.stdout.split() and "work" not in r.stdout.split()


@needs_bwrap
def test_read_only_roles_get_a_read_only_workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.txt").write_text("a")
    r = _inside(["/bin/sh", "-c", f"cat {ws}/a.txt; echo b > {ws}/a.txt"], ws, writable=False)
    assert r.stdout.startswith("a") and "Read-only file system" in r.stderr
    assert (ws / "a.txt").read_text() == "a"


def test_tool_mount_maps_node_modules_under_opt(tmp_path):
    nm = tmp_path / "proj" / "node_modules"
    (nm / ".bin").mkdir(parents=True)
    (nm / "pkg").mkdir()
    (nm / "pkg" / "cli.js").write_text("")
    (nm / ".bin" / "cli").symlink_to("../pkg/cli.js")
    args, inner = sandbox.tool_mount(str(nm / ".bin" / "cli"))
    assert args == ["--ro-bind", str(nm.resolve()), f"{sandbox.TOOLS}/node_modules"]
    assert inner == f"{sandbox.TOOLS}/node_modules/.bin/cli"


def test_without_bwrap_the_cli_agents_refuse_in_one_line(tmp_path, monkeypatch, project):
    monkeypatch.setenv("FAPO_BWRAP", str(tmp_path / "no-bwrap"))
    with pytest.raises(FapoError, match="--no-sandbox"):
        sandbox.require("codex")
    env = {**os.environ, "FAPO_BWRAP": str(tmp_path / "no-bwrap")}
    cmd = [sys.executable, "-m", "fapo", "run", "demo-qa", "--agent", "claude-code"]
    r = subprocess.run(cmd, cwd=project.root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "refusing to run without a sandbox" in r.stderr and "--no-sandbox" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (project.root / "runs").exists()  # refused before any work


def test_tenant_symlink_leaving_the_folder_is_refused(project):
    root = project.tenants_dir / "demo-qa"
    (root / "corpus" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(FapoError, match="symlink leaves the tenant folder"):
        load_tenant("demo-qa", project)
    (root / "corpus" / "passwd").unlink()
    (root / "corpus" / "inside").symlink_to(root / "README.md")  # inside: allowed
    load_tenant("demo-qa", project)


@pytest.mark.parametrize("name", ["../../x", "a/b", "x" * 65, ".hidden", "a..b"])
def test_unsafe_tenant_names_are_refused(project, name):
    path = project.tenants_dir / "demo-qa" / "tenant.yaml"
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "name": name}))
    with pytest.raises(FapoError, match="name"):
        load_tenant("demo-qa", project)


def test_revert_tenant_restores_bytes_and_removes_new_files(tmp_path):
    t = tmp_path / "t"
    shutil.copytree(DEMO, t, ignore=shutil.ignore_patterns("__pycache__"))
    snap = tmp_path / "snap"
    sandbox.snapshot_tenant(t, snap)
    (t / "scorer.py").write_text("def score(e, p):\n    return 1.0\n")
    (t / "data" / "val.jsonl").unlink()
    (t / "sitecustomize.py").write_text("x = 1\n")
    changed = sandbox.revert_tenant(t, snap)
    assert changed == ["data/val.jsonl", "scorer.py", "sitecustomize.py"]
    assert (t / "scorer.py").read_bytes() == (DEMO / "scorer.py").read_bytes()
    assert (t / "data" / "val.jsonl").read_bytes() == (DEMO / "data" / "val.jsonl").read_bytes()
    assert not (t / "sitecustomize.py").exists()
    assert sandbox.revert_tenant(t, snap) == []


@needs_bwrap
def test_candidate_build_runs_in_a_worker_without_data(project):
    tenant = load_tenant("demo-qa", project)
    chain = tenant.files["chain.py"]
    assert build_in_sandbox(tenant) is None  # the demo's own chain builds there
    peek = "def build(ctx):\n    (ctx.root / 'da' 'ta' / 'val.jsonl').read_text()\n"
    sneaky = tenant.variant({"chain.py": chain.replace("def build(ctx", "def _orig(ctx") + peek})
    problem = build_in_sandbox(sneaky)
    assert problem and "No such file or directory" in problem  # the data is simply not there
    assert (tenant.root / "data" / "val.jsonl").is_file()  # in-process it would have read it


def test_flagged_chain_code_never_runs(project, tmp_path):
    tenant = load_tenant("demo-qa", project)
    flag = tmp_path / "ran"
    chain = tenant.files["chain.py"] + f"\nimport os\nos.system('touch {flag}')\n"
    built: list[str] = []
    checks = review_in_code(
        tenant,
        {"chain.py": chain},
        level="code",
        stray=[],
        outside=[],
        immutable_before=tenant.immutable_hashes(),
        leak_index=LeakIndex(tenant),
        known={},
        keys={},
        build=lambda v: built.append("x") or None,
    )
    failed = {c.name: c.reason for c in checks if not c.passed}
    assert "starts a process" in failed["safe_code"]
    assert "builds" not in {c.name for c in checks} and built == [] and not flag.exists()


def test_structure_level_may_not_edit_chain_py(project):
    tenant = load_tenant("demo-qa", project)
    checks = review_in_code(
        tenant,
        {"chain.py": tenant.files["chain.py"] + "\n# tweak\n"},
        level="structure",
        stray=[],
        outside=[],
        immutable_before=tenant.immutable_hashes(),
        leak_index=LeakIndex(tenant),
        known={},
        keys={},
    )
    scope = next(c for c in checks if c.name == "scope")
    assert not scope.passed and "chain.py" in scope.reason


def test_workspace_withholds_a_leaky_readme(project, tmp_path):
    from fapo.agents.base import Brief
    from fapo.workspace import prepare

    tenant = load_tenant("demo-qa", project)
    brief = Brief(tenant="demo-qa", level="prompt", objective="x", scores={}, cluster=None,
                  traces=[], allowed_files=["prompts/answer.md"])  # fmt: skip
    ws = tmp_path / "ws"
    withheld = prepare(ws, tenant, "prompt", brief, {}, leak_index=LeakIndex(tenant))
    assert "README.md" in withheld and not (ws / "context" / "README.md").exists()
    assert (ws / "prompts" / "answer.md").is_file() and (ws / "context" / "scorer.py").is_file()
    assert sorted(p.name for p in ws.iterdir()) == ["BRIEF.md", "brief.json", "context", "prompts"]


# -- the demo through both real CLIs, sandboxed -------------------------------------------------

FIX = DEMO / "fixes"


def _demo_project(tmp_path: Path, kind: str, url: str) -> Path:
    proj = tmp_path / "proj"
    shutil.copytree(DEMO, proj / "tenants" / "demo-qa", ignore=shutil.ignore_patterns("fixes"))
    binary = require("claude" if kind == "claude-code" else "codex")
    agent = {
        "binary": binary,
        "model": "claude-sonnet-4-5" if kind == "claude-code" else "gpt-5.5",
        "max_turns": 8,
        "timeout_s": 60,
        "base_url": url if kind == "claude-code" else url + "/v1",
        "api_key_env": "FAPO_AGENT_KEY",
        "pass_env": ["CLAUDE_CODE_MAX_RETRIES"],
    }
    lines = [f'[agents."{kind}"]', *[f"{k} = {json.dumps(v)}" for k, v in agent.items()]]
    (proj / "fapo.toml").write_text("\n".join(lines) + "\n")
    return proj


def _write(kind: str, rel: str, text: str) -> list:
    if kind == "claude-code":  # Claude Code overwrites only a file it has read
        return [
            Tool("Read", {"file_path": rel}),
            Tool("Write", {"file_path": rel, "content": text}),
        ]
    return [Tool("exec_command", {"cmd": f"cat > {rel} <<'FAPO_EOF'\n{text}FAPO_EOF"})]


def _demo_script(kind: str) -> Script:
    """Read BRIEF.md, then make the documented fix for the level the brief names."""
    read = (
        Tool("Read", {"file_path": "BRIEF.md"})
        if kind == "claude-code"
        else Tool("exec_command", {"cmd": "cat BRIEF.md"})
    )
    fixes = {
        "prompt": _write(kind, "prompts/answer.md", (FIX / "prompts" / "answer.md").read_text()),
        "parameter": _write(kind, "params.yaml", (FIX / "params.yaml").read_text()),
        "structure": _write(
            kind, "prompts/hop_query.md", (FIX / "prompts/hop_query.md").read_text()
        )
        + _write(kind, "structure.yaml", (FIX / "structure.yaml").read_text()),
    }
    s = Script(route_on_tool_results=True)
    s.add(
        "[fapo:role=review]",
        json_answer(
            {"approve": True, "inspected": ["context/diff.patch"], "reasons": ["in scope"]}
        ),
    )
    s.add("[fapo:role=attribute]", Text("no opinion"))
    for level, steps in fixes.items():
        s.add(f"one scoped change at the {level} level", read, *steps, Text(f"{level} fix"))
    s.add("[fapo:role=propose]", read, Text("nothing"))
    return s


@pytest.mark.cli
@pytest.mark.parametrize("kind", ["claude-code", "codex"])
def test_demo_optimizes_through_the_sandboxed_cli(tmp_path, kind):
    require("claude" if kind == "claude-code" else "codex")
    protocol = "anthropic" if kind == "claude-code" else "responses"
    with MockModelServer(protocol, _demo_script(kind)) as srv:
        proj = _demo_project(tmp_path, kind, srv.url)
        proc = subprocess.run(
            [sys.executable, "-m", "fapo", "run", "tenants/demo-qa", "--agent", kind,
             "--run-id", "demo", "--json"],
            cwd=proj, env=agent_env(tmp_path), stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=900,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((proj / "runs" / "demo-qa" / "demo" / "run.json").read_text())
    best = info["best"]
    assert info["val"][best] >= 0.95 and info["test"][best] >= 0.95, info
    commands = [
        json.loads(line)["command"]
        for p in (proj / "runs").rglob("agent-*-propose-*.jsonl")
        for line in p.read_text().splitlines()
        if '"fapo.process"' in line
    ]
    assert commands and all(c[0].endswith("bwrap") and "--unshare-all" in c for c in commands)
    blob = "".join(p.read_text(errors="replace") for p in (proj / "runs").rglob("*") if p.is_file())
    assert AGENT_KEY not in blob and TASK_KEY not in blob


def test_load_settings_sandbox_flag(tmp_path):
    (tmp_path / "fapo.toml").write_text("[agents.codex]\nsandbox = false\n")
    assert load_settings(tmp_path).agent("codex").sandbox is False
    assert load_settings(tmp_path).agent("claude-code").sandbox is True


@pytest.mark.cli
def test_codex_in_the_sandbox_no_web_search_no_key_in_tools_no_reads_outside(tmp_path):
    from agentmock.harness import codex, workspace

    from fapo.agents.base import Brief

    require("codex")
    ws = workspace(tmp_path)
    sealed = tmp_path / "sealed.txt"
    sealed.write_text("SEALED-VALUE")
    script = Script().add(
        "[fapo:role=propose]",
        Tool("exec_command", {"cmd": f"cat {sealed}; env; echo $HOME; ls /"}),
        Text("done"),
    )
    brief = Brief(tenant="t", level="prompt", objective="x", scores={}, cluster=None,
                  traces=[], allowed_files=["prompts/answer.md"])  # fmt: skip
    with MockModelServer("responses", script) as srv:
        codex(tmp_path, srv.url).propose(brief, ws)
        bodies = [r.body for r in srv.model_requests()]
    tools = {t.get("name") or t.get("type") for t in bodies[0].get("tools", [])}
    assert "exec_command" in tools and "web_search" not in tools
    outputs = json.dumps(bodies[-1])  # the tool's output went back to the model
    assert "No such file or directory" in outputs and "SEALED-VALUE" not in outputs
    assert sandbox.HOME in outputs
    assert AGENT_KEY not in outputs and "CODEX_API_KEY" not in outputs
    assert srv.model_requests()[0].headers.get("authorization") == f"Bearer {AGENT_KEY}"

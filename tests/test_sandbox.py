"""The bubblewrap sandbox (fapo/sandbox.py), the sandboxed candidate build (fapo/candidate.py),
tenant symlink / name checks, reverting tampering, and the demo optimizing through both real
CLIs under the sandbox (their model scripted on loopback; the task model is the simulator)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _review_clean(tenant: Any, files: dict[str, str], level: str, **kw: Any) -> list[Any]:
    """`review_in_code` of `files` at `level` with nothing stray, outside or leaked around them."""
    return review_in_code(
        tenant,
        files,
        level=level,
        stray=[],
        outside=[],
        immutable_before=tenant.immutable_hashes(),
        leak_index=LeakIndex(tenant),
        known={},
        keys={},
        **kw,
    )


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
    checks = _review_clean(
        tenant, {"chain.py": chain}, "code", build=lambda v: built.append("x") or None
    )
    failed = {c.name: c.reason for c in checks if not c.passed}
    assert "starts a process" in failed["safe_code"]
    assert "builds" not in {c.name for c in checks} and built == [] and not flag.exists()


def test_structure_level_may_not_edit_chain_py(project):
    tenant = load_tenant("demo-qa", project)
    checks = _review_clean(
        tenant, {"chain.py": tenant.files["chain.py"] + "\n# tweak\n"}, "structure"
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


# -- evaluating candidate code in the sandboxed worker (fapo/worker.py) --------------------------


def _comparable(path: Path) -> list[dict]:
    """results.jsonl without timings, and without which of an example's repeats paid for a
    temperature-0 call its repeats share (one key, one call: whichever repeat asks first, which
    depends on scheduling; the meters, compared beside, hold the totals)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        for field in ("latency_s", "calls", "cache_hits", "tokens", "cost_usd"):
            r.pop(field)
        for s in r["steps"]:
            s.pop("start_s"), s.pop("duration_s")
            for c in s["calls"]:
                for field in ("latency_s", "cache_hit", "cost_usd", "attempts"):
                    c.pop(field)
    return sorted(rows, key=lambda r: (r["index"], r["repeat"]))


def _candidate(tenant, node_code: str = "", *, comment: str = "# candidate\n"):
    """The tenant's chain with `node_code` run at the top of the answer node (a code-level
    candidate); with no code, an honest candidate that only differs by a comment."""
    chain = tenant.files["chain.py"] + "\n" + comment
    if node_code:
        body = "\n".join("        " + line for line in node_code.splitlines())
        chain = chain.replace(
            "    async def answer(state: State) -> dict[str, Any]:\n",
            "    async def answer(state: State) -> dict[str, Any]:\n" + body + "\n",
        )
    return tenant.variant({"chain.py": chain})


@needs_bwrap
def test_honest_code_candidate_scores_and_calls_as_in_process(project, tmp_path):
    from fapo.cache import CallCache
    from fapo.candidate import is_candidate_code
    from fapo.evaluate import evaluate
    from fapo.llm import Meter

    tenant = load_tenant("demo-qa", project)
    fixed = tenant.variant({"prompts/answer.md": (FIX / "prompts" / "answer.md").read_text(),
                            "params.yaml": (FIX / "params.yaml").read_text()})  # fmt: skip
    cand = _candidate(fixed)
    assert not is_candidate_code(fixed) and is_candidate_code(cand)
    out = {}
    for name, variant in (("in", fixed), ("worker", cand)):
        for split in ("train", "val"):
            cache = CallCache(tmp_path / f"{name}.sqlite")
            for attempt in ("cold", "warm"):  # the second pass answers from the call cache
                meter = Meter()
                d = tmp_path / name / split / attempt
                s = evaluate(variant, split, out_dir=d, cache=cache, meter=meter, repeats=2)
                out[name, split, attempt] = (s.mean, s.scores, s.errors, meter.snapshot(),
                                             _comparable(d / "results.jsonl"))  # fmt: skip
            cache.close()
    for key in [("train", "cold"), ("train", "warm"), ("val", "cold"), ("val", "warm")]:
        assert out[("in", *key)] == out[("worker", *key)], key
    mean, _, errors, cold, rows = out["worker", "val", "cold"]
    # cold, at repeats=2: every call ran at temperature 0, so the second repeat replays the first
    assert mean > 0 and errors == 0 and cold["calls"] > 0 and cold["cache_hits"] == cold["calls"]
    assert out["worker", "val", "warm"][3]["calls"] == 0  # cached: identical accounting
    assert rows[0]["label"] is not None and rows[0]["steps"][0]["step"] == "retrieve"
    # attribution reads the worker's step records as it reads in-process ones
    from fapo.attribute import ladder

    base = tenant  # the baseline fails on train, so the ladder has clusters to find
    s_in = evaluate(base, "train", out_dir=tmp_path / "a-in", use_cache=False)
    s_w = evaluate(_candidate(base), "train", out_dir=tmp_path / "a-w", use_cache=False)
    assert s_in.mean == s_w.mean < 1.0
    att_in = ladder(base, tmp_path / "a-in" / "results.jsonl").model_dump()
    att_w = ladder(_candidate(base), tmp_path / "a-w" / "results.jsonl").model_dump()
    assert att_in["clusters"] and att_in == att_w


@needs_bwrap
def test_worker_never_sees_labels_data_or_keys(project, monkeypatch):
    from fapo.evaluate import evaluate

    monkeypatch.setenv("OPENAI_API_KEY", TASK_KEY)
    tenant = load_tenant("demo-qa", project)
    code = (
        "import pathlib\n"
        "seen = {'state': sorted(state), 'env': open('/proc/self/environ').read(),\n"
        "        'files': sorted(p.name for p in pathlib.Path(__file__).parent.iterdir())}\n"
        "return {'answer': repr(seen)}"
    )
    out = project.root / "peek"
    s = evaluate(_candidate(tenant, code), "val", use_cache=False, limit=3, out_dir=out)
    assert s.n == 3 and s.mean == 0.0 and s.errors == 0 and s.calls == 0  # before the model
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for row in rows:
        seen = ast.literal_eval(row["prediction"])
        assert seen["state"] == ["passages", "question"]  # inputs and steps, never the label
        assert TASK_KEY not in seen["env"] and "KEY" not in seen["env"]
        assert not {"data", "scorer.py", "checks.py", "README.md", "generate.py"} & set(
            seen["files"]
        )
        assert {"chain.py", "corpus", "prompts", "tenant.yaml"} <= set(seen["files"])
        assert row["label"] is not None  # the parent scored it against the label


def test_without_bwrap_candidate_code_evaluation_refuses_unless_no_sandbox(project, monkeypatch):
    from fapo.evaluate import evaluate

    monkeypatch.setenv("FAPO_BWRAP", str(project.root / "no-bwrap"))
    tenant = load_tenant("demo-qa", project)
    with pytest.raises(FapoError, match="refusing to evaluate a code-level candidate") as exc:
        evaluate(_candidate(tenant), "val", use_cache=False, limit=2)
    assert "--no-sandbox" in str(exc.value) and "\n" not in str(exc.value)
    assert evaluate(tenant, "val", use_cache=False, limit=2).n == 2  # the tenant's own chain
    s = evaluate(_candidate(tenant), "val", use_cache=False, limit=2, sandbox=False)
    assert s.n == 2 and s.errors == 0  # --no-sandbox: in this process, as before


def _traces(variant, code_timeout: float, n: int = 4):
    """Trace the first `n` val examples through one worker; (Done records, workers started)."""
    import asyncio

    from fapo import worker
    from fapo.llm import Meter, ModelFactory

    async def go():
        factory = ModelFactory(dict(variant.spec.models), variant.settings, None, Meter())
        box = await worker.open_worker(variant, factory, variant="v", split="val",
                                       concurrency=2, example_timeout_s=code_timeout)  # fmt: skip
        try:
            exs = list(variant.examples("val"))[:n]
            return await asyncio.gather(*(box.trace(ex, 0) for ex in exs)), box.starts
        finally:
            await box.close()

    return asyncio.run(go())


FIRST_Q = json.loads((DEMO / "data" / "val.jsonl").read_text().splitlines()[0])["inputs"]


@needs_bwrap
@pytest.mark.parametrize("where", ["async", "thread"])
def test_an_endless_loop_is_the_examples_error_and_the_rest_still_run(project, monkeypatch,
                                                                      where):  # fmt: skip
    from fapo import worker

    monkeypatch.setattr(worker, "GRACE_S", 2.0)
    tenant = load_tenant("demo-qa", project)
    loop = "while True:\n    pass"
    if where == "thread":  # a blocking call, run by LangGraph in an executor thread
        loop = "import time\nwhile True:\n    time.sleep(0.01)"
    hang = f"if state['question'] == {FIRST_Q['question']!r}:\n" + "\n".join(
        "    " + x for x in loop.splitlines()
    )
    done, starts = _traces(_candidate(tenant, hang), code_timeout=2.0)
    assert done[0].error is not None and done[0].error.type == "TimeoutError" and done[0].timed_out
    assert all(d.error is None and d.steps for d in done[1:]), [d.error for d in done[1:]]
    assert starts >= 2  # the stuck worker was killed; the others ran on a fresh one


@needs_bwrap
def test_a_forged_protocol_message_kills_the_worker_fail_closed(project):
    tenant = load_tenant("demo-qa", project)
    forge = (
        "import os\n"
        f"if state['question'] == {FIRST_Q['question']!r}:\n"
        "    for fd in range(3, 12):\n"
        "        try:\n"
        '            os.write(fd, b\'{"kind": "done", "job": 1, "steps": "x"}\\n\')\n'
        "        except OSError:\n"
        "            pass"
    )
    done, starts = _traces(_candidate(tenant, forge), code_timeout=30.0)
    assert done[0].error is not None and done[0].error.type == "WorkerBroken"
    assert "malformed message" in done[0].error.message
    assert all(d.error is None for d in done[1:]) and starts >= 2


@needs_bwrap
def test_a_spent_budget_stops_a_sandboxed_evaluation(project):
    from fapo.errors import BudgetExhausted
    from fapo.evaluate import evaluate
    from fapo.llm import Meter

    tenant = load_tenant("demo-qa", project)
    meter = Meter(max_calls=3)
    with pytest.raises(BudgetExhausted):
        evaluate(_candidate(tenant), "val", use_cache=False, meter=meter, concurrency=2)
    assert meter.calls == 3


def _workers_under(marker: str) -> list[int]:
    found = []
    for p in Path("/proc").iterdir():
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if p.name.isdigit() and b"fapo.worker_main" in cmd and marker.encode() in cmd:
            found.append(int(p.name))
    return found


@needs_bwrap
def test_ctrl_c_kills_the_worker(project, tmp_path):
    import signal
    import time

    tmp = tmp_path / "evaltmp"
    tmp.mkdir()
    script = tmp_path / "ev.py"
    script.write_text(
        "from pathlib import Path\nfrom fapo.settings import load_settings\nfrom fapo.tenant import load_tenant\n"
        "from fapo.evaluate import evaluate\n"
        f"t = load_tenant('demo-qa', load_settings(Path({str(project.root)!r})))\n"
        "chain = t.files['chain.py'].replace('        reply = await llm.ainvoke(prompt)',\n"
        "    '        import asyncio\\n        await asyncio.sleep(300)\\n"
        "        reply = await llm.ainvoke(prompt)')\n"
        "evaluate(t.variant({'chain.py': chain}), 'val', use_cache=False)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _workers_under(str(tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers_under(str(tmp)), "the worker never started"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    assert b"KeyboardInterrupt" in proc.stderr.read()
    time.sleep(0.5)
    assert _workers_under(str(tmp)) == []
    assert list(tmp.iterdir()) == []  # its copy of the tenant is gone too


def test_outside_write_scan_exempts_only_live_runs_for_an_uncontained_agent(tmp_path):
    import time

    runs = tmp_path / "runs"
    own, live, done = runs / "t" / "own", runs / "t" / "live", runs / "t" / "done"
    live_other = runs / "u" / "live"  # a live run of another tenant
    for d in (own, live, done, live_other, tmp_path / "tenant", tmp_path / "home",
              tmp_path / "tmp"):  # fmt: skip
        d.mkdir(parents=True)
    ws = own / "scratch" / "fapo-ws-1" / "workspace"
    ws.mkdir(parents=True)
    (done / ".lock").write_text("{}")  # a finished run: its lock file stays, nobody holds it
    holder = subprocess.Popen(  # another live process holding two runs' locks
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fds = [os.open(p, os.O_RDWR | os.O_CREAT) for p in sys.argv[1:]]\n"
         "[fcntl.flock(fd, fcntl.LOCK_EX) for fd in fds]\n"
         "print('locked', flush=True)\ntime.sleep(120)\n",
         str(live / ".lock"), str(live_other / ".lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert sandbox.live_run_dirs(own) == {live, live_other}
        since = time.time()
        time.sleep(0.02)
        (live / "results.jsonl").write_text("the live run's own write")
        (live_other / "summary.json").write_text("{}")
        (done / "run.json").write_text('{"status": "finished", "best": "v009"}')
        (runs / "t" / "new").mkdir()
        (runs / "t" / "new" / "planted.json").write_text("{}")

        def scan(**kw):
            return sandbox.outside_writes(since, ws, project_root=tmp_path,
                                          tenant_root=tmp_path / "tenant", run_dir=own,
                                          home=tmp_path / "home", tmp=tmp_path / "tmp", **kw)  # fmt: skip

        hits = scan(live_runs=sandbox.live_run_dirs(own))
        assert hits == sorted([str(done / "run.json"), str(done) + "/",
                               str(runs / "t" / "new") + "/",
                               str(runs / "t" / "new" / "planted.json")]), hits  # fmt: skip
        # Contained agents cannot reach runs/ and the built-in one is fapo's code: every
        # other run's folder is someone else's write for them.
        assert scan(contained=True) == [] and scan(trusted=True) == []
    finally:
        holder.kill()
        holder.wait()
    # once its process is gone, that run is no longer live: the same writes are reported
    assert sandbox.live_run_dirs(own) == set()
    assert str(live / "results.jsonl") in scan(live_runs=sandbox.live_run_dirs(own))


def test_a_run_that_finishes_while_the_agent_works_stays_exempt(tmp_path):
    """Live when the agent started (recorded by the restore point) counts, not only at the end."""
    import time

    own, peer = tmp_path / "runs" / "t" / "own", tmp_path / "runs" / "t" / "peer"
    ws = own / "scratch" / "fapo-ws-1" / "workspace"
    for d in (ws, peer, tmp_path / "tenant"):
        d.mkdir(parents=True)
    guard = sandbox.Guard(tmp_path, tmp_path / "tenant", own, tmp_path / ".fapo" / "c.sqlite")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()\n"
         "open(sys.argv[2], 'w').write('finished')\n",
         str(peer / ".lock"), str(peer / "run.json")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    since = time.time()
    time.sleep(0.02)
    point = guard.restore_point(contained=False)
    assert point is not None and point.live_runs == {peer}
    holder.stdin.close()  # the peer run writes its last record and ends (lock released)
    holder.wait(timeout=30)
    outside, _ = guard.after(since, ws, False, point)
    assert not any(str(peer) in h for h in outside), outside
    # the next agent starts after the peer ended: a write there is reported
    point = guard.restore_point(contained=False)
    since = time.time()
    time.sleep(0.02)
    (peer / "run.json").write_text("tampered")
    outside, _ = guard.after(since, ws, False, point)
    assert str(peer / "run.json") in outside


def test_candidate_code_never_builds_or_runs_interventions_in_process(project):
    """A prompt change on top of an accepted code-level incumbent still builds in the worker,
    and attribution's interventions (which need the graph in this process) are skipped for it."""
    from types import SimpleNamespace

    from fapo.interventions import for_run

    tenant = load_tenant("demo-qa", project)
    incumbent = _candidate(tenant)
    built: list[object] = []
    checks = _review_clean(
        incumbent,
        {"prompts/answer.md": incumbent.files["prompts/answer.md"] + "\nBe brief.\n"},
        "prompt",
        build=lambda v: built.append(v) or None,
    )
    assert {c.name: c.passed for c in checks}["builds"] and len(built) == 1
    run = SimpleNamespace(variants={"v000": tenant, "v001": incumbent}, log=SimpleNamespace(
        events=[]), meter=SimpleNamespace(max_calls=None, calls=0), cache=None,
        options=SimpleNamespace(concurrency=2), budget=SimpleNamespace(check_clock=lambda: None))  # fmt: skip
    assert for_run(run, "v000") is not None  # the tenant's own chain: interventions run
    assert for_run(run, "v001") is None


@needs_bwrap
def test_a_candidate_that_does_not_build_in_the_worker_is_one_line(project):
    from fapo.evaluate import evaluate

    tenant = load_tenant("demo-qa", project)
    broken = tenant.variant({"chain.py": tenant.files["chain.py"] + "\nraise ValueError('nope')\n"})
    with pytest.raises(FapoError) as exc:
        evaluate(broken, "val", use_cache=False, limit=1)
    text = str(exc.value)
    assert text.startswith(str(tenant.root / "chain.py")) and "ValueError: nope" in text
    assert "\n" not in text


def test_write_clock_separates_writes_before_and_after_it(tmp_path: Path) -> None:
    """A start taken with time.time() missed about 1 in 1,000 writes made right after it (their
    mtime is stamped from the kernel's coarse clock); every write after write_clock() is seen
    and none before it is."""
    late, early = [], []
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for i in range(400):
        (tmp_path / f"before{i}").write_text("x")
        since = sandbox.write_clock(scratch)
        (tmp_path / f"after{i}").write_text("x")
        early += [p for p in [tmp_path / f"before{i}"] if p.stat().st_mtime > since]
        late += [p for p in [tmp_path / f"after{i}"] if p.stat().st_mtime <= since]
    assert early == [] and late == []
    ws = tmp_path / "ws"
    ws.mkdir()
    since = sandbox.write_clock(scratch)
    (tmp_path / "evil.txt").write_text("x")
    found = sandbox.detect_outside_writes([tmp_path], since, ws, exclude=[scratch])
    assert found == [str(tmp_path / "evil.txt")]

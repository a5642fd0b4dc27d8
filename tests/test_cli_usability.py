"""What a newcomer runs into first (issue 18): set-up and PATH, progress lines, doctor on an
offline set-up, `--json` everywhere, and the CLI's own import graph."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from fapo.cli import app
from fapo.cli_common import live_printer, report_lines

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


# -- 1: the README's commands ------------------------------------------------------------------


def test_readme_setup_commands_exist_and_leave_a_working_fapo() -> None:
    first = _code_blocks(README)[0]
    scripts = re.findall(r"^bash (\S+)", first, flags=re.M)
    assert scripts == [".ci/demo.sh", ".ci/test.sh"]
    tracked = subprocess.run(
        ["git", "ls-files", *scripts], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert tracked == scripts  # a fresh clone has them
    for script in scripts:  # and both go through the set-up that installs .venv/bin/fapo
        assert "bash .ci/setup.sh" in (REPO / script).read_text(encoding="utf-8")
    fapo = REPO / ".venv" / "bin" / "fapo"
    res = subprocess.run([str(fapo), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "Usage: fapo" in res.stdout


def test_a_fresh_clone_has_what_the_readme_commands_run(tmp_path: Path) -> None:
    """The committed tree alone (no untracked module, no local state) validates the demo."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    for script in (".ci/demo.sh", ".ci/test.sh", ".ci/setup.sh"):
        subprocess.run(["bash", "-n", str(clone / script)], check=True)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    where = subprocess.run(
        [sys.executable, "-c", "import fapo; print(fapo.__file__)"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(clone))
    res = subprocess.run(
        [sys.executable, "-m", "fapo", "validate", "demo-qa"],  # demo.sh's first fapo command
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("demo-qa: valid")


def test_readme_says_how_to_get_fapo_on_path_before_the_everyday_commands() -> None:
    activate = README.index("source .venv/bin/activate")
    assert activate < README.index("## Everyday commands")
    assert (REPO / ".venv" / "bin" / "activate").is_file()
    setup = (REPO / ".ci" / "setup.sh").read_text(encoding="utf-8")
    assert "source .venv/bin/activate" in setup  # set-up says it too, at the end


def test_readme_everyday_commands_and_options_exist() -> None:
    block = _code_blocks(README[README.index("## Everyday commands") :])[0]
    commands = _commands()
    for line in block.splitlines():
        words = line.split("#")[0].split()
        if not words:
            continue
        assert words[0] == "fapo", line
        cmd = commands.get(words[1])
        assert cmd is not None, f"README names unknown command: {line}"
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}  # type: ignore[attr-defined]
        for w in words[2:]:
            if w.startswith("--"):
                assert w in opts, f"README uses {w} that `fapo {words[1]}` lacks"


# -- 7: every command has --json -------------------------------------------------------------


def test_every_command_has_json() -> None:
    commands = _commands()
    assert {"schema", "validate", "run", "doctor", "check", "trials"} <= set(commands)
    for name, cmd in commands.items():
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}  # type: ignore[attr-defined]
        assert "--json" in opts, f"fapo {name} has no --json"


def test_schema_json_is_the_tenant_schema() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "fapo", "schema", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "models" in json.loads(res.stdout)["properties"]


def test_shell_completion_is_offered() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "fapo", "--help"], capture_output=True, text=True, timeout=60
    )
    assert "--install-completion" in res.stdout


# -- 2: progress lines -----------------------------------------------------------------------


def test_progress_lines_keep_brackets_and_do_not_wrap(capsys: pytest.CaptureFixture[str]) -> None:
    from fapo.observers import LevelChanged, ProposalStarted

    show = live_printer(False)
    cause = "output breaks declared format (pattern [a-z_]+) [bold]not markup[/bold]"
    show(ProposalStarted(variant="v004", level="prompt", cause=cause))
    why = "2 rejections at prompt level " + "because nothing helped on validation " * 5 + "[p=0.5]"
    show(LevelChanged(level="parameter", why=why))
    err = capsys.readouterr().err
    assert f"v004 prompt: proposing a fix for {cause}\n" in err
    lines = err.splitlines()
    assert len(lines) == 2  # captured stderr is not a terminal: nothing re-wrapped at 80 columns
    assert why in lines[1] and len(lines[1]) > 200


# -- 10: the run names both reports ----------------------------------------------------------


def test_run_output_names_the_html_report(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text("# r\n")
    assert "fapo report" in report_lines(tmp_path)  # not rendered yet: says how
    (tmp_path / "report.html").write_text("<html></html>")
    text = report_lines(tmp_path)
    assert str(tmp_path / "report.html") in text and str(tmp_path / "report.md") in text


# -- 6: doctor on an offline set-up ----------------------------------------------------------


def _project(tmp: Path, task_model: str = "sim:default") -> Path:
    shutil.copy(REPO / "fapo.toml", tmp / "fapo.toml")
    dest = tmp / "tenants" / "demo-qa"
    shutil.copytree(REPO / "tenants" / "demo-qa", dest, ignore=shutil.ignore_patterns("__py*"))
    spec = dest / "tenant.yaml"
    spec.write_text(spec.read_text().replace("task: sim:default", f"task: {task_model}"))
    return tmp


def _doctor(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "CODEX_HOME"}
    env.update(HOME=str(project), PATH=str(project), PYTHONPATH=str(REPO))
    env.pop("CLAUDE_CONFIG_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "fapo", "doctor", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_doctor_passes_offline_setup_without_keys_or_agent_clis(tmp_path: Path) -> None:
    project = _project(tmp_path)
    stub = project / "node_modules" / ".bin" / "claude"  # installed, but no key and no login
    stub.parent.mkdir(parents=True)
    stub.write_text('#!/bin/sh\necho "2.1.197 (Claude Code)"\n')
    stub.chmod(0o755)
    res = _doctor(project, "demo-qa", "--no-probe")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("ok  agent builtin")
    assert "--  agent claude-code: ANTHROPIC_API_KEY is not set" in res.stdout
    assert "--  key ANTHROPIC_API_KEY: not set (not needed" in res.stdout
    assert not [line for line in lines if line.startswith("NO")]
    rows = json.loads(_doctor(project, "demo-qa", "--no-probe", "--json").stdout)
    assert all(r["ok"] or not r["needed"] for r in rows)
    # the same machine asked about the agent it lacks a key for: a NO line, exit 1
    claude = _doctor(project, "--agent", "claude-code", "--no-probe")
    assert claude.returncode == 1
    assert "NO  key ANTHROPIC_API_KEY: not set; needed by agent claude-code" in claude.stdout


def test_doctor_fails_when_a_used_model_lacks_its_key(tmp_path: Path) -> None:
    project = _project(tmp_path, "anthropic:claude-haiku-4-5")
    res = _doctor(project, "demo-qa", "--no-probe")
    assert res.returncode == 1
    assert (
        "NO  key ANTHROPIC_API_KEY: not set; needed by models.task "
        "(anthropic:claude-haiku-4-5)" in res.stdout
    )
    assert "--  key OPENAI_API_KEY" in res.stdout  # unused: listed, not required
    agent = _doctor(project, "--agent", "codex", "--no-probe")  # an agent CLI that is missing
    assert agent.returncode == 1 and "NO  agent codex: 'codex' not found" in agent.stdout


# -- issue 11: no import cycle between the CLI modules ---------------------------------------


def _fapo_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fapo"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("fapo")}
    return out


def test_cli_modules_import_the_shared_helpers_not_each_other() -> None:
    cli = _fapo_imports(REPO / "fapo" / "cli.py")
    extra = _fapo_imports(REPO / "fapo" / "cli_extra.py")
    common = _fapo_imports(REPO / "fapo" / "cli_common.py")
    assert "fapo.cli" not in extra and "fapo.cli_common" in extra
    assert "fapo.cli_common" in cli
    assert not {"fapo.cli", "fapo.cli_extra"} & common
    private = re.compile(r"\bcli\._\w+")
    assert not private.search((REPO / "fapo" / "cli_extra.py").read_text(encoding="utf-8"))

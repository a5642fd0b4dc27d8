"""Bad input ends in one clear line naming the file (and line or key) and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fapo.cli import main

REPO = Path(__file__).resolve().parents[1]


def fapo(args: list[str], cwd: Path, capsys) -> tuple[int, str]:
    old_argv, old_cwd = sys.argv, Path.cwd()
    sys.argv = ["fapo", *args]
    os.chdir(cwd)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, capsys.readouterr().err


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


CASES = {
    "malformed yaml": (
        "tenant.yaml",
        "scope: [prompt, parameter, structure]",
        "scope: [prompt, parameter",
        r"tenant.yaml:\d+: malformed YAML",
    ),
    "unknown key": (
        "tenant.yaml",
        "target_score:",
        "target_scor:",
        r"tenant.yaml:\d+: key 'target_scor': unknown key",
    ),
    "param out of bounds": (
        "params.yaml",
        "k: 2",
        "k: 42",
        r"params.yaml:\d+: parameter 'k': 42 is outside \[1, 8\]",
    ),
    "undeclared param": (
        "params.yaml",
        "k: 2",
        "k: 2\nkk: 3",
        r"params.yaml:\d+: parameter 'kk' is not declared",
    ),
    "missing placeholder": (
        "prompts/answer.md",
        "{question}",
        "{question} {topic}",
        r"prompts/answer.md uses \{topic\} which the chain does not supply",
    ),
    "chain raises on import": (
        "chain.py",
        "from __future__ import annotations",
        "from __future__ import annotations\nraise RuntimeError('boom')",
        r"chain.py:\d+: raised RuntimeError: boom on import",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_reports_one_line_and_exit_2(project, capsys, case: str) -> None:
    import re

    rel, old, new, pattern = CASES[case]
    _edit(project.tenants_dir / "demo-qa" / rel, old, new)
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert lines and re.search(pattern, lines[0]), err
    assert "Traceback" not in err


def test_duplicate_id_and_broken_json_line_name_file_and_line(project, capsys) -> None:
    data = project.tenants_dir / "demo-qa" / "data" / "train.jsonl"
    rows = data.read_text().splitlines()
    data.write_text("\n".join([rows[0], rows[0], *rows[2:]]) + "\n")
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 2 and "train.jsonl:2: duplicate id" in err
    data.write_text("\n".join([rows[0], rows[1][:-5], *rows[2:]]) + "\n")
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 2 and "train.jsonl:2: not valid JSON" in err


def test_scorer_returning_nan_stops_eval_with_one_line(project, capsys) -> None:
    scorer = project.tenants_dir / "demo-qa" / "scorer.py"
    scorer.write_text(
        scorer.read_text() + "\n\ndef score(example, prediction):\n    return float('nan')\n"
    )
    code, err = fapo(["eval", "demo-qa", "--split", "val", "--no-cache"], project.root, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "scorer.py: score() returned nan" in err and "Traceback" not in err


def test_unknown_tenant_and_bad_split(project, capsys) -> None:
    code, err = fapo(["eval", "nope"], project.root, capsys)
    assert code == 2 and "tenant 'nope' not found" in err
    code, err = fapo(["eval", "demo-qa", "--split", "dev"], project.root, capsys)
    assert code == 2 and "unknown split 'dev'" in err


def test_help_imports_no_langgraph_or_sdk() -> None:
    code = (
        "import sys, runpy; sys.argv=['fapo','--help']\n"
        "try:\n    runpy.run_module('fapo', run_name='__main__')\nexcept SystemExit: pass\n"
        "bad=[m for m in sys.modules if m.split('.')[0] in "
        "('langgraph','langchain_core','anthropic','openai','langchain_openai','langchain_anthropic')]\n"
        "print('HEAVY', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]


def test_misspelt_fapo_toml_key_is_one_line(project, capsys) -> None:
    toml = project.root / "fapo.toml"
    toml.write_text(toml.read_text() + "\n[defaults]\nconcurency = 3\n")
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 2
    assert "fapo.toml: key 'defaults.concurency': unknown key" in err and "Traceback" not in err


def test_bad_structure_yaml_names_the_transform_key(project, capsys) -> None:
    (project.tenants_dir / "demo-qa" / "structure.yaml").write_text(
        "transforms:\n  - {kind: majority_vote, node: answer, key: answer, samples: 99}\n"
    )
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 2 and "structure.yaml: key 'transforms.0.majority_vote.samples'" in err

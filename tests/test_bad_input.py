"""Bad input ends in one clear line naming the file (and line or key) and exit code 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fapo.cli import main

REPO = Path(__file__).resolve().parents[1]


def _main(args: list[str], cwd: Path, capsys) -> tuple[int, tuple[str, str]]:
    """`fapo ARGS` in-process from `cwd`: (exit code, (stdout, stderr))."""
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
    out = capsys.readouterr()
    return code, (out.out, out.err)


def fapo(args: list[str], cwd: Path, capsys) -> tuple[int, str]:
    code, (_, err) = _main(args, cwd, capsys)
    return code, err


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


# -- the bad-input corpus --------------------------------------------------------------------------
# Every case: exit 2, exactly one stderr line (`error: …` naming the file and, for data, the line),
# no traceback, and nothing half-written (no temp file left, every JSON artifact whole, no run
# folder left `running`). Run cases use --json so the live progress lines stay off stderr.

T = "tenants/demo-qa/"
BAD_UTF8 = b"\xff\xfe caf\xe9"


def _write(rel: str, text: str | bytes):
    def setup(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")

    return setup


def _append(rel: str, text: str | bytes):
    def setup(root: Path) -> None:
        path = root / rel
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        path.write_bytes(path.read_bytes() + data)

    return setup


def _replace(rel: str, old: str, new: str):
    def setup(root: Path) -> None:
        _edit(root / rel, old, new)

    return setup


def _line(rel: str, lineno: int, new: bytes):
    """Replace data line `lineno` (1-based) with raw bytes."""

    def setup(root: Path) -> None:
        path = root / rel
        lines = path.read_bytes().splitlines(keepends=True)
        lines[lineno - 1] = new + b"\n"
        path.write_bytes(b"".join(lines))

    return setup


def _steps(*fns):
    def setup(root: Path) -> None:
        for fn in fns:
            fn(root)

    return setup


def _share_id(root: Path) -> None:
    """Copy the first train row into val: one id in two splits."""
    train = (root / T / "data/train.jsonl").read_text().splitlines()
    val = root / T / "data/val.jsonl"
    val.write_text(val.read_text() + train[0] + "\n")


_LOOP = "\ndef build(ctx):\n    while True:\n        pass\n"
_TIMEOUT = _append("fapo.toml", "\n[defaults]\nbuild_timeout_s = 1\n")
EVAL = ["eval", "demo-qa", "--split", "val", "--json"]
RUN = ["run", "demo-qa", "--json", "--budget-variants", "1"]
VALIDATE = ["validate", "demo-qa"]

# name: (setup, command, pattern the one line must match)
CORPUS: dict[str, tuple] = {
    # encodings
    "non-utf8 tenant.yaml": (_append(T + "tenant.yaml", b"\n# " + BAD_UTF8 + b"\n"), VALIDATE,
                             r"tenant\.yaml:\d+: not valid UTF-8"),
    "non-utf8 tenant.yaml (eval)": (_append(T + "tenant.yaml", b"\n# " + BAD_UTF8 + b"\n"), EVAL,
                                    r"tenant\.yaml:\d+: not valid UTF-8"),
    "non-utf8 data line": (_line(T + "data/val.jsonl", 3, BAD_UTF8), VALIDATE,
                           r"val\.jsonl:3: not valid UTF-8"),
    "non-utf8 data line (eval)": (_line(T + "data/val.jsonl", 3, BAD_UTF8), EVAL,
                                  r"val\.jsonl:3: not valid UTF-8"),
    "non-utf8 data line (run)": (_line(T + "data/train.jsonl", 5, BAD_UTF8), RUN,
                                 r"train\.jsonl:5: not valid UTF-8"),
    "non-utf8 prompt": (_append(T + "prompts/answer.md", BAD_UTF8), VALIDATE,
                        r"prompts/answer\.md:\d+: not valid UTF-8"),
    "non-utf8 params.yaml": (_append(T + "params.yaml", b"# " + BAD_UTF8), VALIDATE,
                             r"params\.yaml:\d+: not valid UTF-8"),
    "non-utf8 chain.py": (_append(T + "chain.py", b"# " + BAD_UTF8), VALIDATE,
                          r"chain\.py:\d+: not valid UTF-8"),
    "non-utf8 fapo.toml": (_append("fapo.toml", b"# " + BAD_UTF8), VALIDATE,
                           r"fapo\.toml:\d+: not valid UTF-8"),
    # data rows
    "row missing label": (_line(T + "data/val.jsonl", 2, b'{"id": "x", "inputs": {}}'), VALIDATE,
                          r"val\.jsonl:2: missing key 'label'"),
    "row missing label (run)": (_line(T + "data/train.jsonl", 2, b'{"id": "x", "inputs": {}}'),
                                RUN, r"train\.jsonl:2: missing key 'label'"),
    "row not an object": (_line(T + "data/val.jsonl", 4, b"[1, 2]"), VALIDATE,
                          r"val\.jsonl:4: a row must be a JSON object"),
    "row inputs not an object": (_line(T + "data/val.jsonl", 1,
                                       b'{"id": "x", "inputs": 3, "label": 1}'), EVAL,
                                 r"val\.jsonl:1: 'inputs' must be an object"),
    "row empty id": (_line(T + "data/test.jsonl", 1, b'{"id": "", "inputs": {}, "label": 1}'),
                     VALIDATE, r"test\.jsonl:1: 'id' must be a non-empty"),
    "row unknown key": (_line(T + "data/val.jsonl", 1,
                              b'{"id": "x", "inputs": {}, "label": 1, "extra": 2}'), VALIDATE,
                        r"val\.jsonl:1: unknown key 'extra'"),
    "row broken json (eval)": (_line(T + "data/val.jsonl", 6, b'{"id": "x",'), EVAL,
                               r"val\.jsonl:6: not valid JSON"),
    "data file missing": (_replace(T + "tenant.yaml", "budget:", "data:\n  val: data/nope.jsonl\nbudget:"),
                          VALIDATE, r"nope\.jsonl: data file not found"),
    "data path is a folder": (_steps(_write(T + "data/dir.jsonl/x", "x"),
                                     _replace(T + "tenant.yaml", "budget:", "data:\n  val: data/dir.jsonl\nbudget:")),
                              EVAL, r"dir\.jsonl: is not a file"),
    "empty val split": (_write(T + "data/val.jsonl", ""), VALIDATE, r"val\.jsonl: the val split has no rows"),
    "empty val split (eval)": (_write(T + "data/val.jsonl", "\n"), EVAL, r"val\.jsonl: the val split has no rows"),
    "empty val split (run)": (_write(T + "data/val.jsonl", ""), RUN, r"val\.jsonl: the val split has no rows"),
    "empty test split (eval of val)": (_write(T + "data/test.jsonl", ""), EVAL,
                                       r"test\.jsonl: the test split has no rows"),
    "id in two splits": (_share_id, VALIDATE, r"val\.jsonl: id 'train-000' is also in the train split"),
    "id in two splits (eval)": (_share_id, EVAL, r"val\.jsonl: id 'train-000' is also in the train split"),
    "id in two splits (run)": (_share_id, RUN, r"val\.jsonl: id 'train-000' is also in the train split"),
    # chain.py
    "endless build() (validate)": (_steps(_TIMEOUT, _append(T + "chain.py", _LOOP)), VALIDATE,
                                   r"chain\.py: importing chain\.py and build\(ctx\) did not finish within 1 s"),
    "endless build() (eval)": (_steps(_TIMEOUT, _append(T + "chain.py", _LOOP)), EVAL,
                               r"chain\.py: .*did not finish within 1 s"),
    "endless build() (run)": (_steps(_TIMEOUT, _append(T + "chain.py", _LOOP)), RUN,
                              r"chain\.py: .*did not finish within 1 s"),
    "endless import of chain.py": (_steps(_TIMEOUT, _append(T + "chain.py", "\nwhile True:\n    pass\n")),
                                   VALIDATE, r"chain\.py: .*did not finish within 1 s"),
    "chain syntax error": (_append(T + "chain.py", "\ndef broken(:\n"), VALIDATE,
                           r"chain\.py:\d+: syntax error"),
    "chain syntax error (run)": (_append(T + "chain.py", "\ndef broken(:\n"), RUN,
                                 r"chain\.py:\d+: syntax error"),
    "build() raises": (_append(T + "chain.py", "\ndef build(ctx):\n    raise KeyError('x')\n"), EVAL,
                       r"chain\.py:\d+: build\(ctx\) raised KeyError"),
    "build() returns a dict": (_append(T + "chain.py", "\ndef build(ctx):\n    return {}\n"), VALIDATE,
                               r"chain\.py: build\(ctx\) returned dict"),
    "chain without build()": (_write(T + "chain.py", "X = 1\n"), VALIDATE,
                              r"chain\.py: defines no build\(ctx\)"),
    "unknown model role": (_replace(T + "chain.py", "ctx.llm(", "ctx.llm('judge', "), VALIDATE,
                           r"model role 'judge'"),
    "missing prompt file": (_replace(T + "chain.py", 'ctx.prompt("answer"', 'ctx.prompt("answr"'),
                            VALIDATE, r"prompts/answr\.md does not exist"),
    "unbalanced brace in prompt": (_append(T + "prompts/answer.md", "\n{oops\n"), VALIDATE,
                                   r"prompts/answer\.md: .*literal braces"),
    "bad placeholder (run)": (_replace(T + "prompts/answer.md", "{question}", "{question} {topic}"),
                              RUN, r"prompts/answer\.md uses \{topic\}"),
    # tenant.yaml, params, scorer, settings
    "bad model spec": (_replace(T + "tenant.yaml", "task: sim:default", "task: gpt4"), VALIDATE,
                       r"tenant\.yaml:\d+: models\.task: model spec 'gpt4'"),
    "bad model spec (run)": (_replace(T + "tenant.yaml", "task: sim:default", "task: gpt4"), RUN,
                             r"model spec 'gpt4'"),
    "tenant.yaml is a list": (_write(T + "tenant.yaml", "- a\n- b\n"), VALIDATE,
                              r"tenant\.yaml: must be a YAML mapping"),
    "step not in graph": (_replace(T + "tenant.yaml", "steps:\n  answer:", "steps:\n  answr:"), VALIDATE,
                          r"steps\.answr: no such step"),
    "params.yaml not a mapping": (_write(T + "params.yaml", "- 1\n"), VALIDATE,
                                  r"params\.yaml: must be a mapping"),
    "param value missing": (_replace(T + "params.yaml", "max_tokens: 128", ""), VALIDATE,
                            r"declared parameter 'max_tokens' has no value"),
    "scorer missing": (_replace(T + "tenant.yaml", "scorer: scorer.py", "scorer: nope.py"), VALIDATE,
                       r"nope\.py: scorer not found"),
    "scorer without score()": (_write(T + "scorer.py", "X = 1\n"), VALIDATE,
                               r"scorer\.py: defines no score"),
    "checks file missing": (_replace(T + "tenant.yaml", "checks: checks.py", "checks: nope.py"), VALIDATE,
                            r"nope\.py: checks file named in tenant.yaml not found"),
    "fapo.toml malformed": (_append("fapo.toml", "\n[defaults\n"), EVAL, r"fapo\.toml: invalid TOML"),
    "fapo.toml concurrency 0": (_append("fapo.toml", "\n[defaults]\nconcurrency = 0\n"), EVAL,
                                r"fapo\.toml: key 'defaults\.concurrency'"),
    # run folders
    "runs is a file (eval)": (_write("runs", "not a folder"), EVAL, r"runs: a file stands where a folder"),
    "runs is a file (run)": (_write("runs", "not a folder"), RUN, r"runs: a file stands where a folder"),
    ".fapo is a file (eval)": (_write(".fapo", "not a folder"), ["eval", "demo-qa", "--json"],
                               r"\.fapo: a file stands where a folder"),
    "run id with a slash": (None, ["run", "demo-qa", "--json", "--run-id", "../escape"],
                            r"run id '\.\./escape' is not allowed"),
    "run id with a space": (None, ["run", "demo-qa", "--json", "--run-id", "a b"],
                            r"run id 'a b' is not allowed"),
    "resume of a missing run": (None, ["run", "demo-qa", "--json", "--resume", "nope"],
                                r"no run 'nope' under"),
    "status of a missing run": (None, ["status", "nope"], r"no run named 'nope'"),
}  # fmt: skip


def _assert_nothing_half_written(root: Path, *, runs_full: bool = False) -> None:
    """`runs_full`: the run folder's disk is full, so not even `failed` can be written; the run
    must then read as interrupted (resumable once space is freed)."""
    import json

    from fapo.rundir import is_locked

    for path in root.rglob("*"):
        if path.is_file() and path.name.endswith(".tmp"):
            raise AssertionError(f"temp file left behind: {path}")
        if path.suffix == ".json" and path.is_file() and "tenants" not in path.parts:
            json.loads(path.read_text())  # every JSON artifact is whole
        if path.name == "run.json":
            info = json.loads(path.read_text())
            assert not is_locked(path.parent), path
            allowed = ("failed", "finished", "stopped") + (("running",) if runs_full else ())
            assert info["status"] in allowed, info["status"]
            if info["status"] == "running":
                from fapo.rundir import shown_status

                assert shown_status(path.parent, info) == "interrupted (resumable)"


def _check(code: int, err: str, pattern: str) -> None:
    import re

    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning: ")]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_corpus(project, capsys, case: str) -> None:
    setup, args, pattern = CORPUS[case]
    if setup:
        setup(project.root)
    code, err = fapo(args, project.root, capsys)
    _check(code, err, pattern)
    _assert_nothing_half_written(project.root)


def test_run_failing_at_start_is_recorded_failed_and_shown(project, capsys) -> None:
    import json

    _edit(project.tenants_dir / "demo-qa/prompts/answer.md", "{question}", "{question} {topic}")
    code, err = fapo(["run", "demo-qa", "--json", "--run-id", "bad"], project.root, capsys)
    _check(code, err, r"uses \{topic\}")
    info = json.loads((project.runs_dir / "demo-qa/bad/run.json").read_text())
    assert info["status"] == "failed" and "uses {topic}" in info["stop_reason"]
    code, out = _stdout(["status", "bad"], project.root, capsys)
    assert code == 0 and out.splitlines()[0].startswith("demo-qa / bad: failed (")
    assert "None" not in out


def _stdout(args: list[str], cwd: Path, capsys) -> tuple[int, str]:
    code, (out, _) = _main(args, cwd, capsys)
    return code, out


def test_validate_reports_every_problem_once(project, capsys) -> None:
    """Issue 18.11: a bad model spec, an out-of-range parameter and a placeholder error in one
    tenant are three lines, each once, and the model-spec line names tenant.yaml."""
    t = project.tenants_dir / "demo-qa"
    _edit(t / "tenant.yaml", "task: sim:default", "task: gpt4")
    _edit(t / "params.yaml", "k: 2", "k: 42")
    _edit(t / "prompts/answer.md", "{question}", "{question} {topic}")
    _share_id(project.root)
    (t / "data/test.jsonl").write_text("")
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 2 and "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == len(set(errors)) == 5, err
    assert any(re.search(r"tenant\.yaml:\d+: models\.task: model spec 'gpt4'", e) for e in errors)
    assert sum("parameter 'k'" in e for e in errors) == 1
    assert sum("uses {topic}" in e for e in errors) == 1
    assert sum("also in the train split" in e for e in errors) == 1
    assert sum("test split has no rows" in e for e in errors) == 1


# -- file-system failures that need a mount: read-only and full folders (root only) ---------------
def _tmpfs(path: Path, options: str):
    import contextlib

    @contextlib.contextmanager
    def mounted():
        path.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount tmpfs here: {res.stderr.decode().strip()}")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)

    return mounted()


needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting tmpfs needs root"
)

MOUNT_CASES = {
    # folder, mount options, what to prepare inside first, command, pattern
    "read-only runs/ (eval)": ("runs", "ro,size=1m", EVAL, r"runs.*: the file system is read-only"),
    "read-only runs/ (run)": ("runs", "ro,size=1m", RUN, r"runs.*: the file system is read-only"),
    "read-only .fapo/ (eval)": (".fapo", "ro,size=1m", EVAL, r"cache\.sqlite: .*(read-only|writable|opened)"),
    "read-only .fapo/ (run)": (".fapo", "ro,size=1m", RUN, r"cache\.sqlite: .*(read-only|writable|opened)"),
    "disk full runs/ at once (run)": ("runs", "size=4k", RUN, r"runs/demo-qa/.*: the disk is full"),
    "disk full runs/ mid-eval (eval)": ("runs", "size=48k", EVAL, r"runs/demo-qa/.*: the disk is full"),
    "disk full runs/ mid-run (run)": ("runs", "size=160k", RUN, r"runs/demo-qa/.*: the disk is full"),
    "disk full .fapo/ at once (eval)": (".fapo", "size=4k", EVAL, r"cache\.sqlite: .*(disk is full|written)"),
    "disk full .fapo/ mid-eval (eval)": (".fapo", "size=40k", EVAL, r"cache\.sqlite: .*(disk is full|written)"),
    "disk full .fapo/ (run)": (".fapo", "size=40k", RUN, r"cache\.sqlite: .*(disk is full|written)"),
}  # fmt: skip


@needs_root
@pytest.mark.parametrize("case", sorted(MOUNT_CASES))
def test_bad_file_system_corpus(project, capsys, case: str) -> None:
    folder, options, args, pattern = MOUNT_CASES[case]
    with _tmpfs(project.root / folder, options):
        code, err = fapo(args, project.root, capsys)
        _check(code, err, pattern)
        _assert_nothing_half_written(project.root, runs_full=folder == "runs")


def test_broken_run_json_is_one_line_for_status_and_resume(project, capsys) -> None:
    run = project.runs_dir / "demo-qa" / "x"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"run_id": "x", "tenant": "demo-qa", "status": ')
    for args in (["status", "x"], ["run", "demo-qa", "--json", "--resume", "x"]):
        code, err = fapo(args, project.root, capsys)
        _check(code, err, r"demo-qa/x/run\.json:1: not valid JSON")


def test_validate_warns_of_the_key_that_no_longer_acts(project, capsys) -> None:
    """`escalation.high_confidence` (in tenant.yaml files from the old templates) validates, and
    validate says it does nothing and what replaced it."""
    t = project.tenants_dir / "demo-qa"
    _edit(t / "tenant.yaml", "acceptance:", "escalation: {high_confidence: 0.8}\nacceptance:")
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 0, err
    assert re.search(r"warning: .*tenant\.yaml: escalation\.high_confidence has no effect", err)
    assert "min_confidence" in err
    _edit(t / "tenant.yaml", "escalation: {high_confidence: 0.8}\n", "")
    code, err = fapo(["validate", "demo-qa"], project.root, capsys)
    assert code == 0 and "high_confidence" not in err

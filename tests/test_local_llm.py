"""`local:` specs, `--model ROLE=SPEC` and the generation limit sent to compatible servers —
the parts that need no language model (the real server is driven in test_local_llm_real.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fapo.errors import FapoError
from fapo.model_overrides import apply_overrides, parse_overrides
from fapo.models import make_chat_model, parse_spec, price
from fapo.settings import Settings
from fapo.tenant import load_tenant

sys.path.insert(0, str(Path(__file__).parent))
from fakeapi import FakeAPI  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "LANGSMITH_", "LANGCHAIN_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.mark.parametrize(
    ("text", "model"),
    [("local:smollm2", "smollm2"), ("local:/models/q@4:x.gguf", "/models/q@4:x.gguf")],
)
def test_local_spec_parses_and_round_trips(text: str, model: str) -> None:
    spec = parse_spec(text)
    assert (spec.provider, spec.model, spec.base_url) == ("local", model, None)
    assert str(spec) == text
    assert spec.rate_key == "local"
    assert price(text, Settings()) == (0.0, 0.0)


@pytest.mark.parametrize("text", ["local:", "local:smollm2?temperature=1"])
def test_bad_local_spec_is_one_line(text: str) -> None:
    with pytest.raises(FapoError) as exc:
        parse_spec(text)
    assert "\n" not in str(exc.value) and "local:PATH.gguf" in str(exc.value)


@pytest.mark.parametrize(
    ("name", "says"),
    [("nosuch", "local:PATH.gguf"), ("/nonexistent/model.gguf", "does not exist")],
)
def test_unknown_local_model_is_one_line_before_any_process(name: str, says: str) -> None:
    from fapo.local_llm import _SERVERS, resolve_model

    with pytest.raises(FapoError) as exc:
        resolve_model(name)
    assert says in str(exc.value) and "\n" not in str(exc.value)
    assert not _SERVERS


def test_compatible_server_receives_max_tokens_not_max_completion_tokens() -> None:
    # langchain-openai sends `max_completion_tokens`; llama.cpp's server ignores that field, so a
    # compatible endpoint must get `max_tokens` (proved against the real server in the real tests)
    with FakeAPI() as api:
        make_chat_model(parse_spec(f"openai:m@{api.openai_base}"), Settings(), max_tokens=6).invoke(
            "hi"
        )
        body = api.requests[0].body
    assert body.get("max_tokens") == 6
    assert "max_completion_tokens" not in body


def test_role_overrides_parse_and_apply(project) -> None:
    overrides = parse_overrides(["task=local:smollm2"])
    assert overrides == {"task": "local:smollm2"}
    t = load_tenant("demo-qa", project, overrides)
    assert t.spec.models["task"] == "local:smollm2"
    assert load_tenant("demo-qa", project).spec.models["task"].startswith("sim:")
    assert apply_overrides(t.spec, None) is t.spec


@pytest.mark.parametrize(
    ("items", "says"),
    [
        (["task"], "use ROLE=SPEC"),
        (["task=nope:x"], "unknown provider 'nope'"),
        (["task=sim:a", "task=sim:b"], "twice"),
        (["judge=sim:default"], "no model role 'judge'"),
    ],
)
def test_bad_model_override_is_one_line_exit_2(project, items: list[str], says: str) -> None:
    args = [a for item in items for a in ("--model", item)]
    proc = subprocess.run(
        [sys.executable, "-m", "fapo", "eval", "demo-qa", "--limit", "1", *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in proc.stderr


def test_eval_model_override_changes_the_model_called(project) -> None:
    # the override reaches the model layer: the simulator's name is in every recorded call
    proc = subprocess.run(
        [sys.executable, "-m", "fapo", "eval", "demo-qa", "--limit", "2", "--json"]
        + ["--model", "task=sim:other"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    import json

    out = Path(json.loads(proc.stdout)["out"])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    models = {c["model"] for r in records for s in r["steps"] for c in s["calls"]}
    assert models == {"sim:other"}
    assert "`sim:other`" in (out / "summary.md").read_text()


def test_run_records_and_resume_keeps_model_overrides(project) -> None:
    import json

    from fapo.loop import RunOptions
    from fapo.run_setup import resumed_models

    proc = subprocess.run(
        [sys.executable, "-m", "fapo", "run", "demo-qa", "--agent", "builtin", "--json"]
        + ["--budget-variants", "1", "--run-id", "ov", "--model", "task=sim:other"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    run_dir = project.runs_dir / "demo-qa" / "ov"
    info = json.loads((run_dir / "run.json").read_text())
    assert info["options"]["models"] == {"task": "sim:other"}
    assert info["spec"]["models"]["task"] == "sim:other"
    calls = [
        json.loads(line)
        for line in (run_dir / "variants" / "v000" / "eval" / "val" / "results.jsonl")
        .read_text()
        .splitlines()
    ]
    assert {c["model"] for r in calls for s in r["steps"] for c in s["calls"]} == {"sim:other"}
    resumed = RunOptions(run_id="ov", resume=True)
    assert resumed_models("demo-qa", resumed, project) == {"task": "sim:other"}
    assert resumed_models("demo-qa", RunOptions(run_id="nope", resume=True), project) == {}

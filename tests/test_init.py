"""`fapo init`: every template validates, evaluates and gives the optimizer something to fix."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fapo.errors import FapoError
from fapo.evaluate import evaluate
from fapo.loop import RunOptions
from fapo.loop import run as run_loop
from fapo.scaffold import TEMPLATES, create, template_files
from fapo.settings import load_settings
from fapo.tenant import load_tenant
from fapo.validate import validate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "fapo.toml", tmp_path / "fapo.toml")
    return tmp_path


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_validates_evaluates_and_improves(project: Path, template: str) -> None:
    settings = load_settings(project)
    dest = project / "tenants" / f"my-{template}"
    files = create(f"my-{template}", template, dest)
    assert "tenant.yaml" in files and "scorer.py" in files
    tenant, problems, _ = validate(str(dest), settings)
    assert problems == []
    assert tenant.name == f"my-{template}"
    rows = sum(1 for line in (dest / "data" / "val.jsonl").read_text().splitlines() if line)
    s = evaluate(load_tenant(dest, settings), "val", out_dir=project / "ev", use_cache=False)
    assert s.n == rows and s.errors == 0 and 0.0 <= s.mean < 1.0
    result = run_loop(dest, RunOptions(run_id="first"), settings)
    assert result.accepted, f"the built-in agent found nothing to improve in template {template}"
    assert result.val[result.best] > result.val["v000"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_top_level_key_is_explained(template: str) -> None:
    text = (REPO / "fapo" / "templates" / template / "tenant.yaml").read_text()
    lines = text.splitlines()
    keys = yaml.safe_load(text.replace("__TENANT_NAME__", "x")).keys()
    for key in keys:
        i = next(n for n, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert lines[i - 1].startswith("#"), (
            f"{template}/tenant.yaml: '{key}' has no comment above it"
        )


def test_templates_carry_no_caches() -> None:
    for template in TEMPLATES:
        assert not [p for p in template_files(template) if "__pycache__" in p.parts]


def test_bad_requests_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FapoError, match="unknown template; use one of qa, classify, instructions"):
        create("x", "chatbot", tmp_path / "x")
    with pytest.raises(FapoError, match="use letters, digits"):
        create("../evil", "qa", tmp_path / "evil")
    create("dup", "qa", tmp_path / "dup")
    with pytest.raises(FapoError, match="already exists and is not empty"):
        create("dup", "qa", tmp_path / "dup")


def test_init_command(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fapo.cli import app

    monkeypatch.chdir(project)
    res = CliRunner().invoke(app, ["init", "support", "--template", "classify"])
    assert res.exit_code == 0, res.output
    assert "fapo validate support" in res.stdout
    spec = yaml.safe_load((project / "tenants" / "support" / "tenant.yaml").read_text())
    assert spec["name"] == "support" and spec["models"]["task"] == "sim:default"
    assert re.search(r"not an LLM", (project / "tenants" / "support" / "tenant.yaml").read_text())

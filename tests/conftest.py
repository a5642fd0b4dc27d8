"""Shared fixtures: an isolated project (fapo.toml, runs and cache in tmp) over the repo's tenants."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_tmpdir(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """Each test its own $TMPDIR: fapo scans TMP for writes of agents outside the sandbox, and
    other processes on a shared machine write /tmp all the time. Short (not under tmp_path):
    Chromium's socket path under a long TMPDIR exceeded the 108-byte limit."""
    import tempfile

    tmp_path_factory.getbasetemp()  # fixed under the real TMP before $TMPDIR changes
    tmp = tempfile.mkdtemp(prefix="ft")
    monkeypatch.setenv("TMPDIR", tmp)
    monkeypatch.setattr(tempfile, "tempdir", None)
    yield
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def project(tmp_path: Path):
    """Settings of a throwaway project whose tenants folder is a copy of the repo's demos."""
    from fapo.settings import load_settings

    tenants = tmp_path / "tenants"
    tenants.mkdir()
    for name in ("demo-qa", "demo-instructions"):
        src = REPO / "tenants" / name
        if src.is_dir():
            shutil.copytree(src, tenants / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n',
        encoding="utf-8",
    )
    return load_settings(tmp_path)

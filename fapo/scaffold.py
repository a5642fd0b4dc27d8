"""`fapo init`: a new tenant from a template that validates and evaluates straight away.

Templates live in fapo/templates/<name>/ as ordinary tenant folders (so they are linted, tested
and readable as examples); `__TENANT_NAME__` in their text files is replaced by the new name.
The benchmark templates (hotpotqa, hover, papillon) ship no data: `--data PATH` names the
benchmark's official files, which fapo/benchmarks.py turns into the tenant's data and corpus.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from fapo.errors import FapoError

TEMPLATES = ("qa", "classify", "instructions")
#: Templates built from a published benchmark's official files (`--data`); see docs/benchmarks.md.
BENCHMARK_TEMPLATES = ("hotpotqa", "hover", "papillon")
TOKEN = "__TENANT_NAME__"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_TEXT_SUFFIXES = {".yaml", ".yml", ".md", ".py", ".txt"}
_SKIP = {"__pycache__", ".pytest_cache"}


def templates_dir() -> Path:
    return Path(__file__).parent / "templates"


def template_files(template: str) -> list[Path]:
    """The files of a template, relative paths, without caches."""
    root = templates_dir() / template
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file() and not (_SKIP & set(p.parts)) and p.suffix != ".pyc"
    )


def create(name: str, template: str, dest: Path, data: Path | None = None) -> list[str]:
    """Copy `template` to `dest` with the tenant named `name`; return the files written.
    A benchmark template also needs `data`, the benchmark's official files."""
    if template not in TEMPLATES + BENCHMARK_TEMPLATES:
        raise FapoError(
            f"--template {template!r}: unknown template; use one of "
            f"{', '.join(TEMPLATES + BENCHMARK_TEMPLATES)}"
        )
    if template in BENCHMARK_TEMPLATES and data is None:
        raise FapoError(
            f"--template {template} needs --data PATH: the benchmark's official files "
            "(formats in docs/benchmarks.md)"
        )
    if template not in BENCHMARK_TEMPLATES and data is not None:
        raise FapoError(
            f"--data is for the templates {', '.join(BENCHMARK_TEMPLATES)}; "
            f"template {template!r} ships its own data"
        )
    if not _NAME.match(name):
        raise FapoError(
            f"tenant name {name!r}: use letters, digits, '-' and '_' (at most 63), "
            "starting with a letter or digit"
        )
    if dest.exists() and any(dest.iterdir()):
        raise FapoError(f"{dest} already exists and is not empty; choose another name or --dir")
    root = templates_dir() / template
    if not root.is_dir():
        raise FapoError(
            f"template folder {root} is missing from this fapo installation; reinstall fapo"
        )
    written = []
    for rel in template_files(template):
        src, out = root / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix in _TEXT_SUFFIXES:
            out.write_text(src.read_text(encoding="utf-8").replace(TOKEN, name), encoding="utf-8")
        else:
            shutil.copyfile(src, out)
        written.append(rel.as_posix())
    if data is not None:
        from fapo.benchmarks import write_tenant_data

        try:
            write_tenant_data(template, data, dest)
        except FapoError:
            shutil.rmtree(dest, ignore_errors=True)  # no half-built tenant left behind
            raise
        written += sorted(
            p.relative_to(dest).as_posix()
            for sub in ("data", "corpus")
            for p in (dest / sub).glob("*.jsonl")
        )
    return written

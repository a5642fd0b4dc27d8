"""docs/modules.md names every module of the package, and only modules that exist, so a newcomer
finds where each stage lives and a split or move cannot leave the map stale."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "docs" / "modules.md"


def package_modules() -> set[str]:
    """Every `fapo/**/*.py` but package markers and the tenant templates (tenant code, not fapo's)."""
    out = set()
    for p in (ROOT / "fapo").rglob("*.py"):
        rel = p.relative_to(ROOT).as_posix()
        if p.name not in ("__init__.py", "__main__.py") and not rel.startswith("fapo/templates/"):
            out.add(rel)
    return out


def mapped(text: str) -> set[str]:
    """Modules named in the first column of the map's tables."""
    return set(re.findall(r"^\| `(fapo/[\w/]+\.py)` \|", text, flags=re.M))


def test_the_map_names_every_module_and_nothing_else() -> None:
    listed = mapped(MAP.read_text(encoding="utf-8"))
    modules = package_modules()
    assert not modules - listed, f"add to docs/modules.md: {sorted(modules - listed)}"
    assert not listed - modules, (
        f"gone from fapo/, drop from docs/modules.md: {sorted(listed - modules)}"
    )


def test_the_reader_of_the_map_sees_a_missing_module() -> None:
    text = (
        "| `fapo/loop.py` | sequences |\n| `fapo/agents/base.py` | protocol |\nnot `fapo/x.py` |\n"
    )
    assert mapped(text) == {"fapo/loop.py", "fapo/agents/base.py"}

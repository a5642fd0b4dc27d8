"""demo-qa with every documented fix applied and its answer sampling at a temperature: the
pipeline of the A/A tests, where two variants differ only by seeded noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def fixed_files_at(tenant: Any, temperature: float) -> dict[str, str]:
    """The files of demo-qa's fixes/ (prompts, structure, params) with `temperature` set."""
    fixes = Path(tenant.root / "fixes")
    files = {f"prompts/{p.name}": p.read_text() for p in (fixes / "prompts").glob("*.md")}
    files["structure.yaml"] = (fixes / "structure.yaml").read_text()
    params = (fixes / "params.yaml").read_text()
    files["params.yaml"] = params.replace("temperature: 0.0", f"temperature: {temperature}")
    assert files["params.yaml"] != params, "demo-qa's fixed params no longer set temperature 0.0"
    return files

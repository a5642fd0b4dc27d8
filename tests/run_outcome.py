"""What two runs must agree on to count as the same result (the resume tests compare them)."""

from __future__ import annotations

import json
from pathlib import Path


def run_outcome(run: Path) -> dict:
    """Every decision's status, reason and statistics, and the run's best, val, test and stop."""
    decisions = {
        p.parent.name: {
            k: v for k, v in json.loads(p.read_text()).items() if k in ("status", "reason", "stats")
        }
        for p in sorted((run / "variants").glob("v*/decision.json"))
    }
    info = json.loads((run / "run.json").read_text())
    return {
        "decisions": decisions,
        "best": info["best"],
        "val": info["val"],
        "test": info["test"],
        "stop": info["stop_reason"],
    }

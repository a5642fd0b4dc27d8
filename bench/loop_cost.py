"""3. Loop cost: task-model calls and tokens `fapo run demo-qa` spends to reach its final score with
the call cache on (starting cold) divided by the same run with `--no-cache`. Target <= 0.5.

Also reports cost per accepted improvement, where the calls go (stage by stage, from the run's
event log), and a re-run on the warm cache.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import FAPO, Row, copy_tenant, emit, parser, project, run_child, tempdir  # noqa: E402

TARGET = 0.5


def _run(root: Path, run_id: str, *extra: str) -> dict:
    t = run_child([*FAPO, "run", "demo-qa", "--json", "--run-id", run_id, *extra], root)
    info = json.loads((root / "runs" / "demo-qa" / run_id / "run.json").read_text())
    info["wall_s"] = t.wall_s
    info["stages"] = _stages(root / "runs" / "demo-qa" / run_id / "events.jsonl")
    return info


def _stages(events: Path) -> dict[str, int]:
    """Calls issued per kind of loop stage (delta of the budget snapshot each event carries)."""
    out: dict[str, int] = defaultdict(int)
    prev = 0
    for line in events.read_text().splitlines():
        e = json.loads(line)
        b = e.get("budget") or {}
        if "calls" in b:
            kind = e.get("kind", "?")
            if kind == "eval":
                kind = "eval " + str(e.get("key", "")).split("/")[-1]
            out[kind] += b["calls"] - prev
            prev = b["calls"]
    return dict(out)


def measure() -> list[Row]:
    root = project(tempdir("loop"))
    copy_tenant("demo-qa", root)
    on = _run(root, "cache-on")
    off = _run(root, "cache-off", "--no-cache")
    warm = _run(root, "cache-warm")
    s_on, s_off, s_warm = on["spent"], off["spent"], warm["spent"]
    tok = lambda s: s["input_tokens"] + s["output_tokens"]  # noqa: E731
    ratio = s_on["calls"] / s_off["calls"]
    same = on["val"] == off["val"] and on["best"] == off["best"]
    acc = max(len(on["accepted"]), 1)
    stages = ", ".join(f"{k} {v}" for k, v in on["stages"].items() if v)
    hits = s_on["cache_hits"]
    return [
        Row(
            "final score (cache on / off)",
            f"val {on['val'][on['best']]:.3f} / {off['val'][off['best']]:.3f}",
            "same",
            same,
            note=f"best {on['best']}, accepted {on['accepted']}; stop: {on['stop_reason']}",
        ),
        Row(
            "calls cache on / off",
            f"{s_on['calls']} / {s_off['calls']} = {ratio:.3f}",
            f"<= {TARGET}",
            ratio <= TARGET,
            note=f"{hits} cache hits; every other call had a key never seen before in the run, "
            f"so {s_on['calls'] / s_off['calls']:.3f} is the floor for an exact-match cache; "
            f"calls by stage (cache on): {stages}",
        ),
        Row(
            "tokens cache on / off",
            f"{tok(s_on)} / {tok(s_off)} = {tok(s_on) / tok(s_off):.3f}",
            "(info)",
        ),
        Row("wall cache on / off", f"{on['wall_s']:.1f} s / {off['wall_s']:.1f} s", "(info)"),
        Row(
            "cost per accepted improvement",
            f"{s_on['calls'] / acc:.0f} calls, "
            f"{tok(s_on) / acc:.0f} tokens, ${s_on['usd'] / acc:.4f}",
            "(info)",
            note="cache on; the simulator is free, so USD is 0 here by construction",
        ),
        Row(
            "re-run on the warm cache: calls",
            f"{s_warm['calls']}",
            "(info)",
            note=f"{s_warm['cache_hits']} hits; same best: {warm['best'] == on['best']}",
        ),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    a = p.parse_args()
    emit("3. Loop cost (fapo run demo-qa, built-in agent)", measure(), a.json)


if __name__ == "__main__":
    main()

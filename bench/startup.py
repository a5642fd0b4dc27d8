"""4. Start-up: `fapo --help` wall time against `python -c pass`, and what it imports.

Target: `fapo --help` <= 0.4 s absolute, with no langgraph / LangChain / provider SDK import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PY, REPO, Row, alternate, emit, env, median, parser, run_child  # noqa: E402

TARGET_S = 0.4
HEAVY = (
    "langgraph",
    "langchain_core",
    "langchain_anthropic",
    "langchain_openai",
    "anthropic",
    "openai",
    "httpx",
    "pydantic",
    "yaml",
    "rank_bm25",
    "numpy",
)
FORBIDDEN = (
    "langgraph",
    "langchain_core",
    "langchain_anthropic",
    "langchain_openai",
    "anthropic",
    "openai",
)

_PROBE = """
import json, sys
sys.argv = ["fapo", "--help"]
import io, contextlib
from fapo.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        main()
    except SystemExit:
        pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def fapo_bin() -> list[str]:
    exe = Path(PY).with_name("fapo")
    return [str(exe)] if exe.is_file() else [PY, "-m", "fapo"]


def measure(reps: int) -> list[Row]:
    cmd = [*fapo_bin(), "--help"]
    run_child(cmd, REPO)  # warm the OS file cache once
    res = alternate(
        {
            "python": lambda: run_child([PY, "-c", "pass"], REPO),
            "fapo": lambda: run_child(cmd, REPO),
        },
        reps,
    )
    py, fp = median([t.wall_s for t in res["python"]]), median([t.wall_s for t in res["fapo"]])
    out = subprocess.run(
        [PY, "-c", _PROBE], cwd=REPO, env=env(), capture_output=True, text=True, check=True
    ).stdout
    mods = set(json.loads(out.strip().splitlines()[-1]))
    heavy = [m for m in HEAVY if m in mods]
    bad = [m for m in FORBIDDEN if m in mods]
    return [
        Row("python -c pass", f"{py * 1000:.0f} ms"),
        Row(
            "fapo --help",
            f"{fp * 1000:.0f} ms",
            f"<= {TARGET_S * 1000:.0f} ms",
            fp <= TARGET_S,
            note=f"{fp / py:.1f}x python -c pass; {fp - py:.3f} s of fapo's own start-up",
        ),
        Row(
            "langgraph/LangChain/SDK imported by --help",
            ", ".join(bad) or "none",
            "none",
            not bad,
            note=f"other libraries loaded: {', '.join(heavy) or 'none'}",
        ),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    a = p.parse_args()
    emit("4. Start-up", measure(5 if a.quick else 11), a.json)


if __name__ == "__main__":
    main()

"""2. Re-evaluation cost: change only the last of 4 LLM steps' prompt and re-evaluate.

A cold evaluation of the generated 4-step tenant fills the call cache; the variant with a new
`final` prompt is then evaluated with the same cache. Only the last step's calls should be issued:
calls(re-evaluation) / calls(cold) <= 0.26 (0.25 is the limit: one step in four).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Row, emit, parser, project, tempdir  # noqa: E402
from gen_tenant import FINAL_CHANGED, write_tenant  # noqa: E402

TARGET = 0.26


def measure(n: int) -> list[Row]:
    from fapo.cache import CallCache
    from fapo.evaluate import evaluate
    from fapo.settings import load_settings
    from fapo.tenant import load_tenant

    root = project(tempdir("reeval"))
    write_tenant(root / "tenants" / "bench4", n)
    settings = load_settings(root)
    base = load_tenant(root / "tenants" / "bench4", settings)
    changed = base.variant({"prompts/final.md": FINAL_CHANGED})
    cache = CallCache(settings.cache_path)
    try:
        cold = evaluate(base, "val", out_dir=root / "cold", cache=cache)
        again = evaluate(changed, "val", out_dir=root / "re", cache=cache)
    finally:
        cache.close()
    ratio = again.calls / cold.calls
    tok_cold = cold.input_tokens + cold.output_tokens
    tok_re = again.input_tokens + again.output_tokens
    per_step = {k: v["calls"] for k, v in again.steps.items()}
    return [
        Row("cold evaluation: calls issued", f"{cold.calls}", note=f"{cold.cache_hits} cache hits"),
        Row(
            "re-evaluation: calls issued",
            f"{again.calls}",
            note=f"{again.cache_hits} cache hits; calls per step {per_step}",
        ),
        Row("calls re-eval / cold", f"{ratio:.3f}", f"<= {TARGET}", ratio <= TARGET),
        Row("tokens re-eval / cold", f"{tok_re / tok_cold:.3f}", "(info)"),
        Row("wall re-eval / cold", f"{again.wall_s / cold.wall_s:.3f}", "(info)"),
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    a = p.parse_args()
    emit(f"2. Re-evaluation cost (N={a.n}, last of 4 prompts changed)", measure(a.n), a.json)


if __name__ == "__main__":
    main()

"""The "plain LangGraph" side of the overhead benchmark: the tenant's own chain, built with the same
model objects fapo would make (no instrumentation, no cache, no recording, no scoring), run with
`graph.compile().abatch(inputs, config={"max_concurrency": C})`.

    python bench/plain_langgraph.py TENANT_DIR [--split val] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tenant", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--concurrency", type=int, default=16)
    a = ap.parse_args()

    from fapo.context import ChainContext
    from fapo.models import make_chat_model, parse_spec
    from fapo.tenant import load_tenant

    t = load_tenant(a.tenant)
    spec = parse_spec(t.spec.models["task"])

    def model(role: str = "task", **settings: object) -> object:
        return make_chat_model(
            parse_spec(t.spec.models[role]) if role != "task" else spec, t.settings, **settings
        )

    ctx = ChainContext(prompts=t.prompts, params=t.params, root=t.root, model_factory=model)
    app = t.chain_module().build(ctx).compile()
    with t.data_path(a.split).open(encoding="utf-8") as fh:
        inputs = [json.loads(line)["inputs"] for line in fh if line.strip()]
    states = asyncio.run(app.abatch(inputs, config={"max_concurrency": a.concurrency}))
    print(json.dumps({"n": len(states), "last": states[-1].get(t.spec.prediction)}))


if __name__ == "__main__":
    main()

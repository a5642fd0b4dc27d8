"""Regenerate the "What each role sees" section of docs/agents.md from the code, so it cannot drift.

    .venv/bin/python docs/agent_briefs.py          # rewrite the section
    .venv/bin/python docs/agent_briefs.py --check  # exit 1 when docs/agents.md is stale

It evaluates the offline demo tenant (demo-qa, the deterministic simulator — not an LLM) on
train, then runs the real propose, attribution and review stages with an in-process agent that
only records what it was given: the system rules, the task prompt and the workspace's brief,
exactly as a Claude Code or Codex agent would receive them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fapo.agents.base import (  # noqa: E402
    AttributionAnswer,
    AttributionRequest,
    Brief,
    Proposal,
    ProposalFailure,
    ReviewRequest,
    Verdict,
)
from fapo.agents.prompts import request_markdown, system_rules, task_prompt  # noqa: E402
from fapo.attribute import iter_results, traces_for  # noqa: E402
from fapo.evaluate import evaluate  # noqa: E402
from fapo.propose import Incumbent, attribution_context, propose  # noqa: E402
from fapo.records import Cluster  # noqa: E402
from fapo.review import LeakIndex, agent_review  # noqa: E402
from fapo.run_setup import chain_functions  # noqa: E402
from fapo.tenant import load_tenant  # noqa: E402

DOC = ROOT / "docs" / "agents.md"
BEGIN, END = "<!-- agent-briefs:begin -->", "<!-- agent-briefs:end -->"
FENCE = "````"  # the briefs contain ``` blocks of their own


class Recorder:
    """An agent that changes nothing and records what it was shown."""

    name = "recorder"
    contained = True

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, str]] = {}

    def _record(self, role: str, prompt: str, ws: Path, files: list[str]) -> None:
        shown = {"system": system_rules(role), "prompt": prompt}  # type: ignore[arg-type]
        for rel in files:
            if (ws / rel).is_file():
                shown[rel] = (ws / rel).read_text(encoding="utf-8")
        self.seen[role] = shown

    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        self._record("propose", task_prompt("propose", attempt=1), workspace, ["BRIEF.md"])
        return Proposal(failure="recorder", failure_kind=ProposalFailure.NO_CHANGE)

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        prompt = task_prompt("attribute", None, request_markdown(request))
        self._record("attribute", prompt, workspace, ["ATTRIBUTION.md"])
        return AttributionAnswer()

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        prompt = task_prompt("review", None, request_markdown(request))
        self._record("review", prompt, workspace, ["BRIEF.md"])
        return Verdict(approve=True, reasons=["recorded"], inspected=["BRIEF.md"])


def record() -> dict[str, dict[str, str]]:
    agent = Recorder()
    with tempfile.TemporaryDirectory(prefix="fapo-briefs-") as tmp:
        base = Path(tmp)
        shutil.copytree(
            ROOT / "tenants" / "demo-qa", base / "demo-qa", ignore=shutil.ignore_patterns("fixes")
        )
        tenant = load_tenant(base / "demo-qa")
        out = base / "train"
        summary = evaluate(tenant, "train", out_dir=out, use_cache=False)
        results = out / "results.jsonl"
        failing = [r["id"] for r in iter_results(results) if r["score"] < 1.0]
        cluster = Cluster(
            step="retrieve",
            cause="the evidence the answer needs is never retrieved",
            level="structure",
            confidence=0.9,
            example_ids=failing[:6],
            suggested_fix="retrieve again, with a query built from what the first retrieval found",
        )
        inc = Incumbent("v000", tenant, {"train": summary.mean, "val": 0.0}, results)
        propose(
            agent, inc, variant="v001", level="structure", cluster=cluster, history=[],
            out_dir=base / "variants" / "v001", functions=lambda: chain_functions(tenant),
            scratch=base,
        )  # fmt: skip
        leaks = LeakIndex(tenant)
        req = AttributionRequest(
            tenant=tenant.name,
            steps=["retrieve", "answer"],
            levels=tenant.spec.levels(),
            failures=traces_for(results, failing, limit=1, max_chars=300),
        )
        ws = base / "attr" / "workspace"
        ws.mkdir(parents=True)
        attribution_context(agent, tenant, leaks).attribute(req, ws)
        new = tenant.files["prompts/answer.md"].rstrip("\n") + "\nAnswer with only the answer.\n"
        diff = (
            "--- a/prompts/answer.md\n+++ b/prompts/answer.md\n@@ -4,3 +4,4 @@\n"
            " Question: {question}\n+Answer with only the answer.\n"
        )
        agent_review(
            agent, tenant.variant({"prompts/answer.md": new}), level="prompt", diff=diff,
            rationale="Asked for the bare answer: the failures wrap it in a sentence.",
            rules=_rules(), transcripts=base / "review-agent", scratch=base, parent=tenant,
            parent_id="v000", leak_index=leaks,
            cluster=cluster.model_copy(update={
                "step": "answer", "level": "prompt", "cause": "the answer is wrapped in a sentence",
                "suggested_fix": "ask for the bare answer"}),
        )  # fmt: skip
    return agent.seen


def _rules() -> list[str]:
    from fapo.propose import RULES

    return list(RULES)


def render(seen: dict[str, dict[str, str]]) -> str:
    titles = {
        "propose": "Propose (structure level of demo-qa)",
        "attribute": "Attribute (one failure shown; a run sends up to 12)",
        "review": "Review (a prompt-level change of demo-qa)",
    }
    out = [
        BEGIN,
        "<!-- generated by docs/agent_briefs.py from the code; do not edit by hand -->",
        "",
    ]
    for role, shown in seen.items():
        out += [f"### {titles[role]}", ""]
        for name, text in shown.items():
            label = {
                "system": "System rules (Claude: `--append-system-prompt`; Codex: "
                "`developer_instructions`)",
                "prompt": "Task prompt (the user message)",
            }.get(name, f"`{name}` in the workspace")
            out += [
                f"<details><summary>{label}</summary>",
                "",
                FENCE + "text",
                text.rstrip("\n"),
                FENCE,
                "",
                "</details>",
                "",
            ]
    out.append(END)
    return "\n".join(out)


def main(argv: list[str]) -> int:
    doc = DOC.read_text(encoding="utf-8")
    if BEGIN not in doc or END not in doc:
        print(f"{DOC}: markers {BEGIN} … {END} missing; add them where the section belongs")
        return 2
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    new = head + render(record()) + tail
    if "--check" in argv:
        if new != doc:
            print(f"{DOC} is stale: run .venv/bin/python docs/agent_briefs.py")
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

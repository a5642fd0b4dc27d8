"""A test double that replays given edits and answers. For tests (and demos of the guards) only.

Script (a dict, or a JSON/YAML file for `--agent scripted:PATH`):

    proposals:    # one entry per propose() call, in order
      - rationale: "tighten the answer prompt"
        files: {"prompts/answer.md": "…"}          # workspace-relative; null deletes
        outside: {"/abs/path/or/tenant-relative": "…"}   # writes outside the workspace
        raw: {"prompts/answer.md": "fffe41"}            # bytes (hex), e.g. not UTF-8
        symlinks: {"prompts/answer.md": "/abs/target"}  # links made in the workspace
        raise: "message"                                # propose() raises RuntimeError
    reviews:      # one entry per review() call; default approve
      - {approve: false, reasons: ["hard-codes an answer"],
         inspected: ["prompts/answer.md"],
         findings: [{severity: block, file: prompts/answer.md, issue: "hard-codes an answer"}]}
    attributions: # one entry per attribute() call; clusters as in attribution.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from fapo.agents.base import (
    AttributionAnswer,
    AttributionRequest,
    Brief,
    Cluster,
    Invocation,
    Proposal,
    ProposalFailure,
    ReviewFinding,
    ReviewRequest,
    Verdict,
)


class ScriptedAgent:
    name = "scripted"

    def __init__(self, script: dict[str, Any], tenant_root: Path | None = None) -> None:
        self.proposals = list(script.get("proposals") or [])
        self.reviews = list(script.get("reviews") or [])
        self.attributions = list(script.get("attributions") or [])
        self.tenant_root = tenant_root
        self.calls: dict[str, int] = {"propose": 0, "attribute": 0, "review": 0}

    @classmethod
    def from_file(cls, path: Path, tenant_root: Path | None = None) -> ScriptedAgent:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return cls(data or {}, tenant_root)

    def _nth(self, items: list[Any], role: str, history_len: int | None = None) -> Any:
        i = self.calls[role] if history_len is None else history_len
        self.calls[role] += 1
        return items[i] if i < len(items) else None

    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        # Index by the number of earlier attempts so a resumed run replays the same script step.
        step = self._nth(self.proposals, "propose", len(brief.history))
        inv = Invocation(agent=self.name, role="propose")
        if step is None:
            return Proposal(
                invocations=[inv],
                failure="script exhausted",
                failure_kind=ProposalFailure.SCRIPT_EXHAUSTED,
            )
        for rel, text in (step.get("files") or {}).items():
            target = workspace / rel
            if text is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    target.chmod(0o644)
                target.write_text(text, encoding="utf-8")
        for rel, hexed in (step.get("raw") or {}).items():
            (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
            (workspace / rel).unlink(missing_ok=True)
            (workspace / rel).write_bytes(bytes.fromhex(hexed))
        for rel, target in (step.get("symlinks") or {}).items():
            (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
            (workspace / rel).unlink(missing_ok=True)
            (workspace / rel).symlink_to(target)
        if step.get("raise"):
            raise RuntimeError(str(step["raise"]))
        for rel, text in (step.get("outside") or {}).items():
            target = Path(rel) if Path(rel).is_absolute() else (self.tenant_root or workspace) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        return Proposal(rationale=step.get("rationale", "scripted edit"), invocations=[inv])

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        step = self._nth(self.attributions, "attribute")
        inv = Invocation(agent=self.name, role="attribute")
        if step is None:
            return AttributionAnswer(invocations=[inv])
        return AttributionAnswer(
            clusters=[Cluster(**{**c, "source": "agent"}) for c in step], invocations=[inv]
        )

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        step = self._nth(self.reviews, "review") or {
            "approve": True,
            "reasons": ["scripted approve"],
        }
        return Verdict(
            approve=bool(step.get("approve", True)),
            reasons=list(step.get("reasons", [])),
            invocations=[Invocation(agent=self.name, role="review")],
            inspected=list(step.get("inspected", [])),
            findings=[ReviewFinding(**f) for f in step.get("findings", [])],
        )

"""The built-in agent: no LLM. It proposes from fixed, documented moves and picks the best on the
**train** split through a callback the engine provides (validation is never visible to it):

- prompt: remedies keyed by the attributed cause, appended to the step's prompt;
- parameter: a grid over one declared parameter (all values for small ranges, a spread otherwise);
- structure: transforms from the vetted library, wired to the tenant's registered functions.

Its rationale starts with a stable move id, so it never repeats a move listed in the history.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from fapo.agents.base import (
    AgentUsage,
    AttributionAnswer,
    AttributionRequest,
    Brief,
    Invocation,
    Proposal,
    ProposalFailure,
    ReviewRequest,
    Verdict,
)

#: Prompt remedies: id -> (instruction appended to the prompt, cause keywords it addresses).
REMEDIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "only-answer": (
        "Answer with only the final answer: no explanation, no full sentence.",
        ("gold present", "format", "verbose", "unexplained"),
    ),
    "step-by-step": (
        "Reason step by step: first find the intermediate fact that links the inputs "
        "to the answer, then answer.",
        ("unexplained", "hop", "reason", "step"),
    ),
    "follow-every-constraint": (
        "Follow every constraint exactly; check each one before you answer.",
        ("constraint", "unexplained", "instruction"),
    ),
    "json-only": ("Respond only with JSON.", ("json",)),
    "concise": ("Keep the output short and to the point.", ("truncated", "length")),
}
#: Instruction of the query step a retrieval hop adds: the second query is built from what the
#: first hop returned (inputs are appended as labelled fields), with no task-specific wording.
HOP_QUERY_PROMPT = (
    "Write a search query for the information that is still missing to answer the "
    "question.\nWork step by step: first find the intermediate entity named in the items "
    "already retrieved, then write a query naming that entity.\nRespond with only the query."
)
#: Evaluations per move when an implicated step samples at temperature > 0: every move (and the
#: incumbent) is scored on the same repeat indexes, so they share their noise draws.
NOISY_REPEATS = 3
PARAM_HINTS = {
    "truncated": ("token", "length"),
    "length": ("token", "length"),
    "retriev": ("k", "top", "depth", "candidates", "n_"),
    "candidate": ("k", "top", "depth", "candidates"),
    "passage": ("k", "top", "depth"),
}

TrainScore = Callable[..., float]  # (changes, repeats=1) -> mean train score
Move = tuple[str, dict[str, str | None]]


def _grid(spec: dict[str, Any]) -> list[Any]:
    t = spec["type"]
    if t == "bool":
        return [False, True]
    if t == "choice":
        return list(spec["choices"])
    lo, hi = spec["min"], spec["max"]
    if t == "int":
        lo, hi = int(lo), int(hi)
        if hi - lo <= 12:
            return list(range(lo, hi + 1))
        if lo > 0 and hi / lo >= 16:  # wide positive range: powers of two
            vals, v = [], 1
            while v <= hi:
                if v >= lo:
                    vals.append(v)
                v *= 2
            return sorted({lo, *vals, hi})
        return sorted({round(lo + (hi - lo) * i / 8) for i in range(9)})
    return [round(lo + (hi - lo) * i / 5, 4) for i in range(6)]


def _set_param(text: str, current: dict[str, Any], name: str, value: Any) -> str:
    """params.yaml with one value replaced in place, so the file's comments survive."""
    rendered = (
        yaml.safe_dump({name: value}, default_flow_style=True).strip()[1:-1].split(": ", 1)[1]
    )
    pattern = re.compile(rf"^({re.escape(name)}\s*:\s*)([^#\n]*?)(\s*(#.*)?)$", re.M)
    new, n = pattern.subn(lambda m: f"{m.group(1)}{rendered}{m.group(3)}", text, count=1)
    if n == 1 and yaml.safe_load(new) == {**current, name: value}:
        return new
    return yaml.safe_dump({**current, name: value}, sort_keys=False)


class BuiltinAgent:
    """Deterministic proposer. `train_score(changes)` -> mean train score of incumbent+changes."""

    name = "builtin"
    #: progress: told `(done, total)` after each scored move (the loop sets it; racing passes it on)
    on_scored: Callable[[int, int], None] | None = None

    def __init__(
        self,
        train_score: TrainScore | None = None,
        functions: dict[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.train_score = train_score
        self.functions = functions or {}

    # -- moves ---------------------------------------------------------------------------------
    def _tried(self, brief: Brief) -> set[str]:
        """Moves not to propose again: every accepted one, and the rejected ones since the last
        acceptance (a move rejected on top of an older incumbent may work on the new one)."""
        ids: set[str] = set()
        for h in brief.history:
            m = re.match(r"\[([^\]]+)\]", str(h.get("rationale", "")))
            if h.get("outcome") == "accepted":
                ids = {i for i in ids if i.startswith("=")}
                if m:
                    ids.add("=" + m.group(1))
            elif m:
                ids.add(m.group(1))
        return {i.lstrip("=") for i in ids}

    def _implicated(self, brief: Brief) -> list[str]:
        """The cluster's step, then the steps upstream of it (nearest first), as traced."""
        order = list(dict.fromkeys(s["step"] for t in brief.traces for s in t["steps"]))
        step = brief.cluster.step if brief.cluster else None
        if step not in order:
            return [step] if step else order[::-1]
        i = order.index(step)
        return [step, *order[:i][::-1]]

    def _step_prompts(self, ws: Path, brief: Brief) -> list[str]:
        """Prompt files of the implicated steps (matched by their fixed text in the recorded
        calls), the cluster's step first, then upstream ones; then every other prompt."""
        prompts = sorted(p.relative_to(ws).as_posix() for p in (ws / "prompts").glob("*.md"))
        used: list[str] = []
        for step in self._implicated(brief):
            used += [p for p in self._prompts_of(ws, brief, step) if p not in used]
        return used + [p for p in prompts if p not in used]

    def _at_cause(self, mid: str, ws: Path, brief: Brief) -> bool:
        """Does move `mid` act on the attributed step or parameter itself?"""
        c = brief.cluster
        if c is None:
            return False
        if mid.startswith("param:"):
            return mid[len("param:") :].split("=", 1)[0] in c.parameters
        if mid.startswith("prompt:"):
            rel = mid.split("@", 1)[1]
            return rel in self._prompts_of(ws, brief, c.step)
        return f"@{c.step}." in mid

    def _prompts_of(self, ws: Path, brief: Brief, step: str) -> list[str]:
        """Prompt files whose fixed text appears in `step`'s recorded calls."""
        sent = " ".join(
            c["prompt"]
            for t in brief.traces
            for s in t["steps"]
            if s["step"] == step
            for c in s["calls"]
        )
        used = []
        for p in sorted((ws / "prompts").glob("*.md")):
            text = p.read_text(encoding="utf-8")
            fragments = [f.strip() for f in re.split(r"\{[^{}]*\}", text) if len(f.strip()) > 12]
            if fragments and any(f[:60] in sent for f in fragments):
                used.append(p.relative_to(ws).as_posix())
        return used

    def _noisy(self, brief: Brief) -> bool:
        """Does any traced step sample (a recorded call at temperature > 0)? Then one train
        evaluation of a move is one noisy draw, wherever the sampling step sits."""
        return any(
            (c.get("temperature") or 0) > 0
            for t in brief.traces
            for s in t["steps"]
            for c in s["calls"]
        )

    def _prompt_moves(self, ws: Path, brief: Brief) -> list[Move]:
        cause = (brief.cluster.cause if brief.cluster else "unexplained").lower()
        ranked = sorted(REMEDIES.items(), key=lambda kv: not any(k in cause for k in kv[1][1]))
        moves = []
        for rel in self._step_prompts(ws, brief):
            text = (ws / rel).read_text(encoding="utf-8")
            for rid, (instruction, _) in ranked:
                if instruction not in text:
                    moves.append(
                        (
                            f"prompt:{rid}@{rel}",
                            {rel: text.rstrip("\n") + "\n\n" + instruction + "\n"},
                        )
                    )
        return moves

    def _param_moves(self, ws: Path, brief: Brief) -> list[Move]:
        current = yaml.safe_load((ws / "params.yaml").read_text(encoding="utf-8")) or {}
        cause = (brief.cluster.cause if brief.cluster else "").lower()
        hints = [h for key, hs in PARAM_HINTS.items() if key in cause for h in hs]

        def related(name: str) -> bool:
            n = name.lower()
            return any(n == h or n.startswith(h) or h in n for h in hints if len(h) > 1) or (
                "k" in hints and (n == "k" or n.endswith("_k"))
            )

        # Parameters whose move repaired failures in attribution's interventions first, then the
        # ones the cause points at, then the rest (the train score picks the best).
        repaired = set(brief.cluster.parameters) if brief.cluster else set()
        names = sorted(brief.param_bounds, key=lambda n: (n not in repaired, not related(n)))
        text = (ws / "params.yaml").read_text(encoding="utf-8")
        moves = []
        for name in names:
            for value in _grid(brief.param_bounds[name]):
                if value != current.get(name):
                    moves.append(
                        (
                            f"param:{name}={value}",
                            {"params.yaml": _set_param(text, current, name, value)},
                        )
                    )
        return moves

    def _structure_moves(self, ws: Path, brief: Brief) -> list[Move]:
        path = ws / "structure.yaml"
        existing = (
            yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
        ) or {}
        transforms = list(existing.get("transforms") or [])
        step = brief.cluster.step if brief.cluster else None
        trace_steps = [s for t in brief.traces[:1] for s in t["steps"]]
        keys_of = {
            s["step"]: list(json.loads(s["update"]).keys())
            for s in trace_steps
            if s.get("update") not in (None, "null") and isinstance(json.loads(s["update"]), dict)
        }
        input_keys = list(brief.traces[0]["inputs"]) if brief.traces else []
        list_steps = [
            (s["step"], k)
            for s in trace_steps
            if s.get("update") not in (None, "null")
            for k, v in (json.loads(s["update"]) or {}).items()
            if isinstance(v, list)
        ]
        llm_steps = [s["step"] for s in trace_steps if s.get("calls")]
        targets = [step] if step else []
        targets += [s for s in llm_steps if s not in targets]
        moves: list[Move] = []

        def add(mid: str, t: dict[str, Any], extra: dict[str, str | None] | None = None) -> None:
            doc = {"transforms": [*transforms, t]}
            moves.append(
                (mid, {"structure.yaml": yaml.safe_dump(doc, sort_keys=False), **(extra or {})})
            )

        for fname, fn in sorted(self.functions.items()):
            try:
                params = list(inspect.signature(fn).parameters)
            except (TypeError, ValueError):
                continue
            if params[:1] == ["query"]:
                # A hop goes after a step that produced a list (retrieval-like), extending it.
                for tgt, lkey in list_steps:
                    prompt = (
                        HOP_QUERY_PROMPT
                        + f"\n\n{lkey.capitalize()}:\n{{{lkey}}}\n\n"
                        + "\n".join(f"{k.capitalize()}: {{{k}}}" for k in input_keys)
                        + "\n"
                    )
                    hop = {
                        "kind": "retrieval_hop",
                        "after": tgt,
                        "query_prompt": "hop_query",
                        "inputs": [*input_keys, lkey],
                        "search": fname,
                        "key": lkey,
                    }
                    mid = f"structure:retrieval_hop@{tgt}.{lkey}:{fname}"
                    add(mid, hop, {"prompts/hop_query.md": prompt})
                    # The step that reads the extra evidence may need telling how to use it: the
                    # hop together with one remedy on a consumer prompt is still one concern.
                    for rel in sorted((ws / "prompts").glob("*.md")):
                        text = rel.read_text(encoding="utf-8")
                        for rid, (instruction, _) in REMEDIES.items():
                            if instruction not in text and f"{{{lkey}}}" in text:
                                add(
                                    f"{mid}+{rid}@{rel.name}",
                                    hop,
                                    {
                                        "prompts/hop_query.md": prompt,
                                        f"prompts/{rel.name}": text.rstrip("\n")
                                        + "\n\n"
                                        + instruction
                                        + "\n",
                                    },
                                )
            elif len(params) == 2 and not re.match(r"(is_|valid|check)", fname):
                for tgt in targets:
                    for key in keys_of.get(tgt, []):
                        add(
                            f"structure:postprocess@{tgt}.{key}:{fname}",
                            {"kind": "postprocess", "after": tgt, "key": key, "function": fname},
                        )
            elif len(params) == 2:
                for tgt in targets:
                    for key in keys_of.get(tgt, []):
                        add(
                            f"structure:validate_retry@{tgt}.{key}:{fname}",
                            {
                                "kind": "validate_retry",
                                "node": tgt,
                                "key": key,
                                "validator": fname,
                                "max_attempts": 3,
                            },
                        )
        for tgt in targets:
            if tgt in llm_steps:
                for key in keys_of.get(tgt, [])[:1]:
                    add(
                        f"structure:majority_vote@{tgt}.{key}",
                        {"kind": "majority_vote", "node": tgt, "key": key, "samples": 3},
                    )
        # Moves on the attributed step first: on a train-score tie (stable sort in `propose`) the
        # change at the broken step wins over a workaround elsewhere.
        return sorted(moves, key=lambda m: not (step and f"@{step}." in m[0]))

    # -- protocol ------------------------------------------------------------------------------
    def propose(self, brief: Brief, workspace: Path) -> Proposal:
        make = {
            "prompt": self._prompt_moves,
            "parameter": self._param_moves,
            "structure": self._structure_moves,
        }.get(brief.level)
        if make is None:  # the built-in agent writes no Python (the `code` level)
            return Proposal(
                invocations=[Invocation(agent=self.name, role="propose")],
                failure=f"no {brief.level}-level moves: the built-in agent never edits chain.py",
                failure_kind=ProposalFailure.NOTHING_LEFT,
            )
        tried = self._tried(brief)
        moves = [(mid, ch) for mid, ch in make(workspace, brief) if mid not in tried]
        inv = Invocation(
            agent=self.name, role="propose", final_text=f"{len(moves)} candidate moves"
        )
        if not moves:
            return Proposal(
                rationale="",
                invocations=[inv],
                failure=f"nothing left to try at the {brief.level} level",
                failure_kind=ProposalFailure.NOTHING_LEFT,
            )
        base = brief.scores.get("train", 0.0)
        scored = []
        repeats = NOISY_REPEATS if self._noisy(brief) else 1
        if self.train_score is not None:
            if repeats > 1:  # the incumbent on the same draws as the moves
                base = self.train_score({}, repeats=repeats)
            for mid, changes in moves:
                scored.append((self.train_score(changes, repeats=repeats), mid, changes))
                if self.on_scored is not None:  # progress: "k/N moves scored" while it scores
                    self.on_scored(len(scored), len(moves))
            scored.sort(key=lambda x: -x[0])
            best, mid, changes = scored[0]
            # A move at what attribution implicated (the step's own prompt, a parameter whose move
            # repaired failures, a transform at the step) wins when it earns at least half of the
            # best move's gain: the fix at the cause over a workaround elsewhere.
            own = [x for x in scored if self._at_cause(x[1], workspace, brief)]
            if own and own[0][0] > base and own[0][0] - base >= (best - base) / 2:
                best, mid, changes = own[0]
            if best <= base:
                return Proposal(
                    invocations=[inv],
                    failure=(
                        f"no {brief.level} move improves the train score {base:.3f} "
                        f"(best {mid}: {best:.3f}; {len(moves)} tried)"
                    ),
                    failure_kind=ProposalFailure.NO_IMPROVEMENT,
                )
            note = f"train {base:.3f} -> {best:.3f} (best of {len(moves)} moves scored on train"
            note += f", {repeats} repeats each)" if repeats > 1 else ")"
        else:
            mid, changes = moves[0]
            note = "first untried move (no train scoring available)"
        for rel, text in changes.items():
            target = workspace / rel
            if text is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8")
        trials = [{"move": m, "train": round(s, 4)} for s, m, _ in scored[:10]]
        inv = inv.model_copy(update={"final_text": json.dumps(trials), "usage": AgentUsage()})
        return Proposal(rationale=f"[{mid}] {note}", invocations=[inv])

    def attribute(self, request: AttributionRequest, workspace: Path) -> AttributionAnswer:
        return AttributionAnswer(
            invocations=[
                Invocation(
                    agent=self.name,
                    role="attribute",
                    final_text="the built-in agent does not cluster "
                    "unexplained failures; they stay 'unexplained'",
                )
            ]
        )

    def review(self, request: ReviewRequest, workspace: Path) -> Verdict:
        """The deterministic review in code already ran; the built-in reviewer adds nothing."""
        return Verdict(
            approve=True,
            reasons=["no objection beyond the checks in code"],
            invocations=[Invocation(agent=self.name, role="review")],
        )

"""Escalation: which level the next proposal works at, weighed on the attribution of every cluster.

Rules (docs/loop.md, "Interventions, evidence and escalation"):
- evidence is weighed per level: every cluster of a level together, and the share of the failures
  its clusters cover weighted by confidence — never the single largest cluster;
- the cheapest level with attributed failures not yet tried is worked on first; a cluster below
  `min_confidence` is a guess (the ladder's "unexplained"), not an attribution: its level is
  worked on once no level has attributed untried failures;
- a level is never left while it still has attributed, untried failures (unless the agent has
  nothing left to try there); after `patience` rejections with every cluster tried, move up
  exactly one level;
- an acceptance re-opens every level (what failed before may work on top of the new incumbent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from fapo.records import Attribution, Cluster, DecisionRecord, Level
from fapo.spec import EscalationSpec


def cluster_key(cluster: Cluster) -> str:
    return f"{cluster.step}|{cluster.cause}|{cluster.level}"


@dataclass(frozen=True)
class LevelState:
    level: Level
    rejections: int = 0  # consecutive, at this level
    exhausted: tuple[Level, ...] = ()
    jumped: bool = False  # moved since the last decision (one level per decision)
    tried: tuple[str, ...] = ()  # cluster keys proposed on since the last acceptance


@dataclass(frozen=True)
class LevelEvidence:
    level: Level
    failures: int
    clusters: int
    gap: float  # share of the failures these clusters cover, weighted by confidence


def weigh(clusters: Sequence[Cluster], failures: int | None = None) -> dict[str, LevelEvidence]:
    """All clusters of each level together: how many failures, how much of the gap."""
    total = failures or sum(len(c.example_ids) for c in clusters) or 1
    out: dict[str, LevelEvidence] = {}
    for c in clusters:
        ev = out.get(c.level, LevelEvidence(c.level, 0, 0, 0.0))
        n = len(c.example_ids)
        out[c.level] = LevelEvidence(
            c.level, ev.failures + n, ev.clusters + 1, ev.gap + n * c.confidence / total
        )
    return out


class EscalationPolicy(Protocol):
    """Which level the next proposal works at, and on which cluster. `before_proposal` sees the
    incumbent's attribution (a reason string means the level moved); `choose` names the cluster
    the proposal works on; `after_decision` returns None to stop the run."""

    def before_proposal(
        self, state: LevelState, attribution: Attribution
    ) -> tuple[LevelState, str | None]: ...

    def choose(self, state: LevelState, attribution: Attribution) -> Cluster | None: ...

    def after_decision(
        self,
        state: LevelState,
        decision: DecisionRecord,
        level_exhausted: bool = False,
        cluster: Cluster | None = None,
        attribution: Attribution | None = None,
    ) -> tuple[LevelState | None, str]: ...


@dataclass(frozen=True)
class LadderPolicy:
    levels: tuple[Level, ...]
    spec: EscalationSpec

    def _untried(self, state: LevelState, clusters: Sequence[Cluster], level: str) -> list[Cluster]:
        return [c for c in clusters if c.level == level and cluster_key(c) not in state.tried]

    def _evidence(self, state: LevelState, clusters: Sequence[Cluster]) -> list[Cluster]:
        """The clusters escalation moves on: the attributed ones (confidence at least
        `min_confidence`) while any of them is untried at a level not exhausted, else all. A
        guess at the prompt level (news-section's 5 unexplained failures at 0.3) held the run
        there for two rejected proposals, 1,168 calls, before its 18 parameter failures at 0.95
        were worked on."""
        sure = [c for c in clusters if c.confidence >= self.spec.min_confidence]
        open_ = [
            c for c in sure if c.level not in state.exhausted and cluster_key(c) not in state.tried
        ]
        return sure if open_ else list(clusters)

    def before_proposal(
        self, state: LevelState, attribution: Attribution
    ) -> tuple[LevelState, str | None]:
        """Go to the cheapest level that has attributed, untried failures when it is below the
        current level, or when the current level has no attributed failures at all (then the
        levels in between have none either: nothing to skip)."""
        clusters = self._evidence(state, attribution.clusters)
        if state.jumped or not clusters:
            return state, None
        pending = [
            lv
            for lv in self.levels
            if lv not in state.exhausted and self._untried(state, clusters, lv)
        ]
        if not pending or pending[0] == state.level:
            return state, None
        target = pending[0]
        here, there = self.levels.index(state.level), self.levels.index(target)
        has_own = any(c.level == state.level for c in clusters)
        if there < here or not has_own:
            ev = weigh(clusters, attribution.failures)[target]
            # the current level's clusters were all filtered out as guesses (none attributed)
            guesses = not has_own and any(c.level == state.level for c in attribution.clusters)
            left = (
                f"has only guesses left (confidence below {self.spec.min_confidence})"
                if guesses
                else "has none left"
            )
            why = (
                f"{ev.failures} failure(s) in {ev.clusters} cluster(s) attributed to the "
                f"{target} level are untried (≈{ev.gap:.0%} of the failures by confidence); "
                f"the {state.level} level {left}: moving to {target}"
            )
            return LevelState(target, 0, state.exhausted, True, state.tried), why
        return state, None

    def choose(self, state: LevelState, attribution: Attribution) -> Cluster | None:
        """The cluster to work on at the state's level: untried attributed ones by weight first,
        then untried guesses, then the heaviest of the level, else the heaviest overall (e.g. a
        failure nothing explained)."""
        clusters = attribution.clusters

        def weight(c: Cluster) -> tuple[float, int]:
            return (len(c.example_ids) * c.confidence, len(c.example_ids))

        attributed = self._untried(state, self._evidence(state, clusters), state.level)
        untried = self._untried(state, clusters, state.level)
        at = [c for c in clusters if c.level == state.level]
        for group in (attributed, untried, at, clusters):
            if group:
                return max(group, key=weight)
        return None

    def after_decision(
        self,
        state: LevelState,
        decision: DecisionRecord,
        level_exhausted: bool = False,
        cluster: Cluster | None = None,
        attribution: Attribution | None = None,
    ) -> tuple[LevelState | None, str]:
        """Next state, or None when every permitted level is exhausted."""
        if decision.accepted:
            # A new incumbent re-opens every level and every cluster: re-attribution decides.
            # The next before_proposal goes down to the cheapest level that still has failures.
            return LevelState(state.level, 0, ()), "accepted: every level re-opened"
        tried = (*state.tried, cluster_key(cluster)) if cluster else state.tried
        rejections = state.rejections + 1
        after = LevelState(state.level, rejections, state.exhausted, False, tried)
        if not level_exhausted:
            clusters = self._evidence(after, attribution.clusters if attribution else [])
            untried = self._untried(after, clusters, state.level)
            if untried:
                return after, (
                    f"{len(untried)} attributed cluster(s) at the {state.level} level untried: "
                    "staying"
                )
            if rejections < self.spec.patience:
                return after, f"{rejections} consecutive rejection(s) at {state.level} level"
        exhausted = (*state.exhausted, state.level)
        why = "nothing left to try" if level_exhausted else f"{rejections} rejections"
        for nxt in self.levels[self.levels.index(state.level) + 1 :]:
            if nxt not in exhausted:
                return LevelState(nxt, 0, exhausted, False, tried), (
                    f"{why} at {state.level} level: up to {nxt}"
                )
        for nxt in self.levels:
            if nxt not in exhausted:
                return LevelState(nxt, 0, exhausted, False, tried), (
                    f"{why} at {state.level} level: back to the untried {nxt} level"
                )
        return None, "every permitted level is exhausted"

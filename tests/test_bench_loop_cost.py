"""bench/loop_cost.py's half-budget arithmetic: the `--budget-calls` B of the third P3 run leaves
room under 0.5x today's calls for the sealed test evaluation a budget stop is always followed by,
counting only `VARIANT/test` evals (not val looks or repeats), and the P3 (b) comparison of scores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from loop_cost import at_least, capped_budget, reached_val_at, same_result  # noqa: E402


def _log(path: Path, events: list[tuple[str, str, int, dict]]) -> Path:
    """An events.jsonl with (kind, key, cumulative calls, data) per line, as the loop writes it."""
    lines = [
        json.dumps({"seq": i, "kind": k, "key": key, "budget": {"calls": c}, "data": d})
        for i, (k, key, c, d) in enumerate(events)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run_log(tmp_path: Path, test_own: int | None) -> Path:
    second = {"mean": 1.0, "n": 40} if test_own is None else {"mean": 1.0, "calls": test_own}
    return _log(
        tmp_path / "events.jsonl",
        [
            ("eval", "v000/train", 40, {"mean": 0.1, "calls": 40}),
            ("eval", "v000/val", 80, {"mean": 0.2, "calls": 40}),
            ("eval", "v001/look1/val", 100, {"mean": 0.9, "calls": 20}),
            ("decision", "v001", 100, {"status": "rejected"}),
            ("eval", "v002/look1/val", 130, {"mean": 0.9, "calls": 30}),
            ("decision", "v002", 130, {"status": "accepted"}),
            ("eval", "v002/val", 150, {"mean": 0.75, "calls": 20}),
            ("eval", "v002/val-r5", 400, {"mean": 0.7, "calls": 250}),
            ("stopped", "run", 400, {"kind": "budget"}),
            ("eval", "v000/test", 440, {"mean": 0.1, "calls": 40}),
            ("eval", "v002/test", 530, second),
        ],
    )


@pytest.mark.parametrize("test_own", [90, None])  # the eval's own calls, else the snapshot's growth
def test_budget_sets_aside_only_the_sealed_test_calls(tmp_path: Path, test_own: int | None) -> None:
    events = _run_log(tmp_path, test_own)
    assert capped_budget(1001, events) == (500 - 130, 130)
    assert capped_budget(200, events) == (100 - 130, 130)  # <= 0: the bench skips the run


def test_today_val_is_reached_by_an_incumbent_on_all_of_val(tmp_path: Path) -> None:
    events = _run_log(tmp_path, 90)
    assert reached_val_at(events, 0.2) == 80  # the baseline already
    assert reached_val_at(events, 0.75) == 150  # v002 once accepted, not v001's or v002's looks
    assert reached_val_at(events, 0.8) is None
    assert reached_val_at(events, None) is None


def test_scores_compare_rounded_to_six_decimals() -> None:
    today = {"val": 2 / 3, "test": 0.611111}
    assert same_result(today, {"val": 0.6666667, "test": 0.6111114})
    assert at_least(today, {"val": 0.66666661, "test": 0.7})  # below 2/3, rounds equal
    assert not at_least(today, {"val": 0.9, "test": 0.6111})
    assert not at_least(today, {"val": None, "test": 0.9})  # a budget stop before val was scored


def test_a_tenant_passes_on_the_half_budget_run_and_a_failing_today_run_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Canned runs: 'better' does more than today uncapped (so not (a)) but its half-budget run
    matches today within 0.5x (b); 'broken' cannot run on today's code and the bench goes on."""
    import loop_cost

    events = _run_log(tmp_path, 90)  # the uncapped run's test evals cost 130 calls
    today = {"calls": 1000, "val": 0.5, "test": 0.5}
    uncapped = {"calls": 3000, "val": 0.75, "test": 1.0}
    seen: list[tuple[str, int | None]] = []

    def fake_run(name: str, root: Path, extra: dict, budget_calls: int | None = None) -> dict:
        seen.append((root.name, budget_calls))
        if name == "broken" and extra.get("FAPO_GATING") == "off":
            raise RuntimeError(f"{name}: fapo run failed:\nerror: unknown key 'x' in tenant.yaml")
        fig = today if extra.get("FAPO_GATING") == "off" else uncapped
        if budget_calls is not None:
            fig = {"calls": budget_calls + 60, "val": 0.5, "test": 0.5}
        return {
            **fig,
            "best": "v002",
            "accepted": ["v002"],
            "stop_kind": "budget" if budget_calls else "levels_exhausted",
            "stop": "",
            "stages": {},
            "test_calls": 60,
            "events": str(events),
        }

    monkeypatch.setattr(loop_cost, "_run", fake_run)
    rows, raw = loop_cost.measure(["better", "broken"], "off")
    assert ("better-capped", 1000 // 2 - 130) in seen
    assert not any(r.startswith("broken-capped") for r, _ in seen)
    verdicts = {r.figure: r for r in rows if r.figure in ("P3 better", "P3 broken")}
    assert verdicts["P3 better"].passed and verdicts["P3 better"].value == "met by (b) only"
    assert verdicts["P3 broken"].passed is None
    assert verdicts["P3 broken"].value == "no today figure"
    assert "unknown key" in verdicts["P3 broken"].note
    assert raw["better"]["p3"] == {"a": False, "b": True, "passed": True, "why": "met by (b) only"}
    assert raw["better"]["capped"]["calls"] == 1000 // 2 - 130 + 60

    rows, _ = loop_cost.measure(["better"], "off", capped=False)
    assert [r.value for r in rows if r.figure == "P3 better"] == [
        "not met: not (a); (b) not run (--no-capped)"
    ]

"""Progress inside stages and the wall-clock budget inside them: progress lines during a proposal
and an evaluation (plain, captured), the rich bar on a terminal, plain lines rate-limited, and a
`--budget-minutes` stop inside an evaluation (a fake clock: one second per model call) that
resumes with a raised budget to the result of an uninterrupted run, paying no example twice."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from rich.console import Console

import fapo.observers as obs
from fapo.compare import PairedImprovement
from fapo.errors import BudgetExhausted
from fapo.evaluate import evaluate
from fapo.loop import Run, RunOptions
from fapo.records import DecisionRecord, Status, StopKind
from fapo.settings import load_settings
from fapo.tenant import load_tenant

REPO = Path(__file__).resolve().parents[1]
FIXES = REPO / "tenants" / "demo-qa" / "fixes"


def _settings(root: Path):
    (root / "tenants").mkdir(parents=True)
    shutil.copytree(
        REPO / "tenants" / "demo-qa",
        root / "tenants" / "demo-qa",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "fapo.toml").write_text(
        '[paths]\ntenants = "tenants"\nruns = "runs"\ncache = ".fapo/cache.sqlite"\n'
    )
    return load_settings(root)


def _plain(every_s: float = 0.0) -> tuple[obs.ProgressPrinter, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, soft_wrap=True, highlight=False)
    return obs.ProgressPrinter(console=console, every_s=every_s), out


# -- progress lines during a proposal and an evaluation ----------------------------------------


def test_plain_progress_lines_during_a_proposal_and_an_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(obs, "EMIT_EVERY_S", 0.0)  # every tick is an event (no timing in tests)
    printer, out = _plain(every_s=0.0)
    seen: list[obs.Event] = []
    t = load_tenant("demo-qa", _settings(tmp_path))
    opts = RunOptions(agent="builtin", run_id="p", budget={"max_variants": 1}, concurrency=1)
    Run(t, opts, callbacks=[seen.append, printer], report=False).execute()

    lines = out.getvalue().splitlines()
    start = lines.index(next(x for x in lines if "v001 prompt: proposing a fix" in x))
    decided = next(i for i, x in enumerate(lines) if x.startswith("  accepted") or "rejected" in x)
    during = [x for x in lines[start + 1 : decided] if "moves scored" in x]
    moves = [e for e in seen if isinstance(e, obs.ProposalProgress)]
    total = moves[-1].total
    assert total is not None and total >= 3
    # One line per scored move, k/N in order, calls growing, between proposal and decision.
    # The race (fapo/racing.py) reports moves whose race is over, several at once when the
    # screen drops them: the count only grows, ends at the total, and each step is a line.
    counted = [e.done for e in moves if e.total is not None]
    assert counted == sorted(counted) and counted[-1] == total and len(set(counted)) >= 2
    for k in set(counted):
        assert any(f"v001 prompt: {k}/{total} moves scored" in x for x in during), during
    calls = [e.calls for e in moves]
    assert calls == sorted(calls) and calls[-1] > 0
    assert all(e.variant == "v001" and e.level == "prompt" for e in moves)
    # The baseline's evaluations: examples done / total, before each one's result line.
    v0 = [e for e in seen if isinstance(e, obs.EvalProgress) and e.variant == "v000"]
    assert {e.split for e in v0} >= {"train", "val", "test"}
    train = [e.done for e in v0 if e.split == "train"]
    assert train == list(range(1, 41)) and all(e.total == 40 for e in v0 if e.split == "train")
    first = lines.index(next(x for x in lines if "v000 train: 1/40 examples (2%)" in x))
    assert first < lines.index(next(x for x in lines if x.startswith("  eval v000 train:")))
    assert any("v000 train: 20/40 examples (50%)" in x and "elapsed" in x for x in lines)


def test_plain_lines_are_rate_limited_per_stage() -> None:
    """CI logs: at most one line per `every_s` seconds of a stage, none for a short stage."""
    printer, out = _plain(every_s=15.0)
    for i in range(1, 101):  # a 100-second evaluation ticking every second
        printer(obs.EvalProgress(variant="v003", split="val", done=i, total=100, calls=4 * i,
                                 elapsed_s=float(i), eta_s=float(100 - i)))  # fmt: skip
    for i in range(1, 6):  # a 5-second proposal: shorter than every_s, no line
        printer(obs.ProposalProgress(variant="v004", level="parameter", done=i, total=5,
                                     calls=40 * i, elapsed_s=float(i)))  # fmt: skip
    lines = out.getvalue().splitlines()
    assert lines == [
        f"  v003 val: {i}/100 examples ({i}%) · {4 * i} calls · "
        f"{obs.duration(i)} elapsed · ~{obs.duration(100 - i)} left"
        for i in (15, 30, 45, 60, 75, 90)
    ]


def test_watch_sends_first_last_new_total_and_paced_ticks() -> None:
    now = [0.0]
    sent: list[tuple[int, int | None]] = []

    def make(done: int, total: int | None, calls: int, el: float, eta: float | None) -> obs.Event:
        sent.append((done, total))
        return obs.Event()

    w = obs.Watch(make, lambda e: None, calls=lambda: 0, every_s=1.0, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 0.25
        w.tick(done, 10)
    w.tick(10, 12)  # a new total is always sent
    assert sent == [(1, 10), (5, 10), (9, 10), (10, 10), (10, 12)]


def test_rich_bar_renders_when_forced_to_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, highlight=False)
    printer = obs.ProgressPrinter(console=console)
    assert printer.live
    printer(obs.ProposalStarted(variant="v002", level="parameter", cause="retrieval [k] depth"))
    for k in range(1, 6):
        printer(obs.ProposalProgress(variant="v002", level="parameter", done=k, total=17,
                                     calls=40 * k, elapsed_s=60.0 * k, eta_s=60.0 * (17 - k)))  # fmt: skip
    drawn = out.getvalue()
    assert "\x1b[" in drawn  # terminal control: a live display, not plain lines
    assert "5/17" in drawn and "moves scored" in drawn and "200 calls" in drawn
    assert "5m00s, ~12m00s left" in drawn and "━" in drawn
    decision = DecisionRecord(variant="v002", status=Status.REJECTED, reason="no gain")
    printer(obs.Decided(decision=decision))
    assert printer._bar is None  # the bar left the terminal before the decision's line
    assert "rejected" in out.getvalue().split("5/17")[-1]


# -- the wall clock inside an evaluation ---------------------------------------------------------


def test_an_evaluation_stopped_by_its_hook_keeps_finished_examples(tmp_path: Path) -> None:
    t = load_tenant("demo-qa", _settings(tmp_path))

    def hook(done: int, total: int) -> None:
        if done >= 7:
            raise BudgetExhausted("wall-clock budget spent (1 min)")

    with pytest.raises(BudgetExhausted):
        evaluate(t, "val", out_dir=tmp_path / "e", concurrency=4, on_progress=hook)
    kept = (tmp_path / "e" / "results.jsonl.partial").read_text().splitlines()
    # examples in flight when the hook fired finished and were written; none started after
    assert 7 <= len(kept) <= 7 + 3 and len({json.loads(x)["id"] for x in kept}) == len(kept)
    assert not (tmp_path / "e" / "results.jsonl").exists()


def _script(root: Path) -> str:
    script = {
        "proposals": [
            {"files": {"prompts/answer.md": (FIXES / "prompts/answer.md").read_text()}},
            {"files": {"params.yaml": (FIXES / "params.yaml").read_text()}},
        ]
    }
    (root / "script.json").write_text(json.dumps(script))
    return f"scripted:{root / 'script.json'}"


def _run(
    root: Path, budget: dict, *, resume: bool = False, seen: list | None = None, cache: bool = True
) -> Run:
    t = load_tenant("demo-qa", load_settings(root))
    opts = RunOptions(agent=_script(root), run_id="r", resume=resume, budget=budget, concurrency=1, use_cache=cache)  # fmt: skip
    # One full val evaluation per candidate (the unstaged rule), so the deadline falls inside one
    # evaluation of 40 examples; staged looks go through the same evaluate hook.
    rule = PairedImprovement(t.spec.acceptance, seed=t.spec.seed)
    r = Run(t, opts, acceptance=rule, callbacks=[seen.append] if seen is not None else [], report=False)  # fmt: skip
    r.budget.use_clock(lambda: float(r.meter.calls))  # one second per model call
    return r


def _outcome(root: Path) -> dict:
    run = root / "runs" / "demo-qa" / "r"
    decisions = {
        p.parent.name: {k: json.loads(p.read_text()).get(k) for k in ("status", "reason", "stats")}
        for p in sorted((run / "variants").glob("v*/decision.json"))
    }
    info = json.loads((run / "run.json").read_text())
    keep = ("best", "val", "test", "stop_reason", "accepted")
    return {"decisions": decisions, **{k: info[k] for k in keep}}


def _events(root: Path) -> list[dict]:
    text = (root / "runs" / "demo-qa" / "r" / "events.jsonl").read_text()
    return [json.loads(x) for x in text.splitlines()]


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_wall_clock_stop_inside_an_evaluation_resumes_to_the_uninterrupted_result(
    tmp_path: Path, cache: bool
) -> None:
    """With the call cache the interrupted evaluation's finished examples are cache hits; without
    it (`--no-cache`) they are read back from its `results.jsonl.partial`: paid once either way."""
    budget = {"max_variants": 2}
    ref, seen = tmp_path / "ref", []
    _settings(ref)
    _run(ref, budget, seen=seen, cache=cache).execute()
    expected = _outcome(ref)
    assert expected["accepted"] == ["v001", "v002"]
    ref_calls = json.loads((ref / "runs/demo-qa/r/run.json").read_text())["spent"]["calls"]
    # Where the candidate v002's validation evaluation starts and ends, in calls (= seconds).
    began = next(e.budget["calls"] for e in seen if isinstance(e, obs.EvalStarted) and e.variant == "v002" and e.split == "val")  # fmt: skip
    ended = next(e.budget["calls"] for e in seen if isinstance(e, obs.EvalFinished) and e.variant == "v002" and e.split == "val")  # fmt: skip
    assert ended - began >= 20

    root = tmp_path / "stopped"
    _settings(root)
    minutes = (began + ended) / 2 / 60  # the deadline falls inside that evaluation
    res = _run(root, {**budget, "max_minutes": minutes}, cache=cache).execute()
    assert res.stop.kind is StopKind.BUDGET and "wall-clock budget spent" in res.stop_reason
    run = root / "runs" / "demo-qa" / "r"
    keys = {(e["kind"], e["key"]) for e in _events(root)}
    assert ("eval", "v002/val") not in keys and ("decision", "v002") not in keys
    assert ("decision", "v001") in keys  # what finished before the deadline is recorded
    partial = (run / "variants/v002/eval/val/results.jsonl.partial").read_text().splitlines()
    assert 0 < len(partial) < 40  # stopped inside, finished examples kept
    assert not (run / "variants/v002/eval/val/results.jsonl").exists()
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["test"]  # the sealed test split, as for a stop
    # The same budget again: the run is where it stopped; it replays to the same budget stop.
    again = _run(root, {}, resume=True, cache=cache).execute()
    assert again.stop_reason == res.stop_reason and again.best == res.best

    done = _run(root, {"max_minutes": 10_000}, resume=True, cache=cache).execute()  # raised
    assert _outcome(root) == expected
    assert done.stop.kind is not StopKind.BUDGET or "variant" in done.stop_reason
    # No finished example was paid twice: the interrupted evaluation's examples were cache hits,
    # so the stopped-then-resumed run issued the calls of the uninterrupted one, plus only the
    # sealed test evaluation of v001, the incumbent when the budget stopped the first session.
    spent = json.loads((run / "run.json").read_text())["spent"]["calls"]
    extra = next(e["data"]["calls"] for e in _events(root) if e["key"] == "v001/test")
    assert extra > 0 and spent == ref_calls + extra
    results = (run / "variants/v002/eval/val/results.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in results) == sorted({json.loads(x)["id"] for x in results})  # fmt: skip
    assert len(results) == 40 and not (run / "variants/v002/eval/val/results.jsonl.partial").exists()  # fmt: skip
    stops = [e["key"] for e in _events(root) if e["kind"] == "stopped"]
    assert stops == ["run", "run.2"]  # the budget stop superseded, never rewritten
    info = json.loads((run / "run.json").read_text())
    assert info["budget"]["max_minutes"] == 10_000  # a later resume keeps the raised budget


def test_a_wall_clock_stop_inside_the_baseline_still_finishes_with_a_report(
    tmp_path: Path,
) -> None:
    """No val score exists yet: the run ends with the budget stop, the sealed test split and a
    report instead of a KeyError traceback (the call budget hit the same path before)."""
    t = load_tenant("demo-qa", _settings(tmp_path))
    r = Run(t, RunOptions(agent="builtin", run_id="b", budget={"max_minutes": 0.5}))
    r.budget.use_clock(lambda: float(r.meter.calls))  # 30 calls: inside v000's train evaluation
    res = r.execute()
    assert res.stop.kind is StopKind.BUDGET and res.val == {} and set(res.test) == {"v000"}
    assert (res.run_dir / "report.md").is_file()
    partial = res.run_dir / "variants/v000/eval/train/results.jsonl.partial"
    assert 0 < len(partial.read_text().splitlines()) < 40

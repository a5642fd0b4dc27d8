"""`--trials N`: N runs with distinct ids, seeds and caches, summarized as mean ± sd."""

from __future__ import annotations

import shutil
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from fapo.artifacts import read_json
from fapo.errors import FapoError
from fapo.evaluate import evaluate
from fapo.loop import RunOptions
from fapo.runtime import MODEL_SEED
from fapo.scaffold import create
from fapo.settings import Settings, load_settings
from fapo.tenant import load_tenant
from fapo.trials import mean_sd, run_trials

REPO = Path(__file__).resolve().parents[1]


@dataclass
class FakeResult:
    run_dir: Path
    best: str
    val: dict[str, float]
    test: dict[str, float]
    accepted: list[str] = field(default_factory=list)
    stop_reason: str = "done"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(REPO / "fapo.toml", tmp_path / "fapo.toml")
    create("cls", "classify", tmp_path / "tenants" / "cls")
    return tmp_path


def test_aggregates_independent_trials(project: Path) -> None:
    finals = [0.6, 0.7, 0.95]
    calls: list[tuple[RunOptions, Settings]] = []

    model_seeds: list[int] = []

    def fake_run(root: Any, opts: RunOptions, settings: Settings) -> FakeResult:
        i = len(calls)
        calls.append((opts, settings))
        model_seeds.append(MODEL_SEED.get())
        return FakeResult(
            project / "runs" / opts.run_id,
            "v001",
            {"v000": 0.5, "v001": finals[i]},
            {"v000": 0.4, "v001": finals[i] - 0.1},
            ["v001"],
        )

    res = run_trials(
        "cls", RunOptions(run_id="exp", seed=10), 3, load_settings(project), run=fake_run
    )
    assert [o.run_id for o, _ in calls] == ["exp-t1", "exp-t2", "exp-t3"]
    assert [o.seed for o, _ in calls] == [10, 11, 12]
    assert model_seeds == [10, 11, 12] and MODEL_SEED.get() == 0  # reset after the trials
    assert not res.identical_because
    caches = {s.cache_path for _, s in calls}
    assert len(caches) == 3  # a shared cache would replay trial 1 in every later trial
    assert res.stats["val_final"]["mean"] == pytest.approx(statistics.fmean(finals))
    assert res.stats["val_final"]["sd"] == pytest.approx(statistics.stdev(finals))
    assert res.stats["gain_test"]["mean"] == pytest.approx(statistics.fmean(finals) - 0.5)
    saved = read_json(project / "runs" / "cls" / "exp-trials.json")
    assert saved["trials"] == 3 and saved["stats"]["val_final"]["n"] == 3
    md = (project / "runs" / "cls" / "exp-trials.md").read_text()
    assert f"{statistics.fmean(finals):.3f} ± {statistics.stdev(finals):.3f}" in md
    assert "0.750 ± " in res.text()


def test_mean_sd_of_one_value_has_zero_sd() -> None:
    assert mean_sd([0.5]) == {"mean": 0.5, "sd": 0.0, "min": 0.5, "max": 0.5, "n": 1, "sem": 0.0}
    assert mean_sd([]) == {}


def test_real_trials_then_resume(project: Path) -> None:
    settings = load_settings(project)
    res = run_trials("cls", RunOptions(run_id="real"), 2, settings)
    runs = [read_json(Path(r["run_dir"]) / "run.json") for r in res.runs]
    assert [r["options"]["seed"] for r in runs] == [0, 1]
    vals = [r["val"][r["best"]] for r in runs]
    assert res.stats["val_final"]["mean"] == pytest.approx(statistics.fmean(vals))
    assert (project / ".fapo" / "trials" / "real-t1.sqlite").is_file()
    # temperature 0 on the simulator, built-in agent: identical trials, and the output says why
    assert res.identical_because and "temperature 0, which is deterministic" in res.text()
    with pytest.raises(FapoError, match="already exists"):
        run_trials("cls", RunOptions(run_id="real"), 2, settings)
    again = run_trials("cls", RunOptions(run_id="real", resume=True), 3, settings)
    assert [r["run_id"] for r in again.runs] == ["real-t1", "real-t2", "real-t3"]
    assert again.runs[0]["val_final"] == res.runs[0]["val_final"]


def _set_temperature(project: Path, t: float) -> None:
    params = project / "tenants" / "cls" / "params.yaml"
    params.write_text(params.read_text().replace("temperature: 0.0", f"temperature: {t}"))


def _predictions(project: Path, seed: int, tmp: Path) -> list[str]:
    tenant = load_tenant("cls", load_settings(project))
    token = MODEL_SEED.set(seed)
    try:
        evaluate(tenant, "val", out_dir=tmp / f"s{seed}", use_cache=False)
    finally:
        MODEL_SEED.reset(token)
    lines = (tmp / f"s{seed}" / "results.jsonl").read_text().splitlines()
    return [str(read_json_line(x)["prediction"]) for x in lines if x.strip()]


def read_json_line(line: str) -> dict[str, Any]:
    import json

    return json.loads(line)


def test_model_seed_moves_the_simulators_noise_only_when_it_samples(
    project: Path, tmp_path: Path
) -> None:
    assert _predictions(project, 0, tmp_path / "t0") == _predictions(project, 1, tmp_path / "t0")
    _set_temperature(project, 1.0)
    hot = [_predictions(project, s, tmp_path / "t1") for s in (0, 1, 2)]
    assert hot[0] != hot[1] or hot[1] != hot[2]  # independent samples per seed
    assert hot[0] == _predictions(project, 0, tmp_path / "again")  # and reproducible


def test_noisy_trials_differ(project: Path) -> None:
    _set_temperature(project, 1.0)
    # one candidate: a second one is `temperature: 0.0` (the noise cluster's parameter), after
    # which both trials' finals are deterministic and rightly equal
    opts = RunOptions(run_id="hot", budget={"max_variants": 1})
    res = run_trials("cls", opts, 2, load_settings(project))
    finals = [(r["val_final"], r["test_final"]) for r in res.runs]
    assert finals[0] != finals[1], finals  # trial 2 did not replay trial 1's noise
    assert not res.identical_because and "same numbers" not in res.text()


def test_resumed_trials_keep_the_model_override(project: Path) -> None:
    """`--trials N --resume` without `--model` runs every trial on the model trial 1 started with."""
    settings = load_settings(project)
    opts = RunOptions(run_id="ovr", models={"task": "sim:other"})
    run_trials("cls", replace(opts, budget={"max_variants": 1}), 1, settings)
    again = run_trials("cls", RunOptions(run_id="ovr", resume=True, budget={"max_variants": 1}), 2, settings)  # fmt: skip
    for r in again.runs:
        info = read_json(Path(r["run_dir"]) / "run.json")
        assert info["spec"]["models"]["task"] == "sim:other", r["run_id"]

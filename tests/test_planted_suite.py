"""The planted-defect suite (bench/planted) cannot silently rot: every tenant validates, its data is
what the seeded generator writes, every planted defect causes failures that only its fix removes
(ground truth non-empty), and each fix on its own (with the fixes that unmask it) changes scores."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fapo.settings import load_settings
from fapo.validate import validate

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "bench" / "planted"
sys.path.insert(0, str(SUITE))

from ground_truth import (  # noqa: E402
    FAIL_BELOW,
    derive,
    load_defects,
    scores,
    suite_dirs,
    variant,
)

TENANTS = [d.name for d in suite_dirs()]
KINDS = {"upstream", "noise"}


def test_the_suite_has_six_tenants_with_three_defects_each() -> None:
    assert len(TENANTS) >= 6, TENANTS
    for name in TENANTS:
        defects = load_defects(SUITE / name)
        assert len(defects) >= 3, name
        assert len({d.level for d in defects}) >= 2, f"{name}: defects on one level only"
        kinds = {k for d in defects for k in KINDS if d.kind.startswith(k)}
        assert kinds == KINDS, f"{name}: needs an upstream and a noise defect, has {kinds}"
        for d in defects:
            assert (SUITE / name / "fixes" / d.id).is_dir(), (name, d.id)
            assert set(d.needs) <= {x.id for x in defects} - {d.id}, (name, d.id)


@pytest.mark.parametrize("name", TENANTS)
def test_tenant_validates(name: str) -> None:
    tenant, problems, _ = validate(str(SUITE / name), load_settings(ROOT))
    assert tenant is not None and problems == [], problems


def test_data_is_what_the_seeded_generators_write(tmp_path: Path) -> None:
    copy = tmp_path / "planted"
    shutil.copytree(SUITE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for script in ("generate.py", "generate_more.py"):
        subprocess.run([sys.executable, str(copy / script)], check=True, capture_output=True)
    for path in sorted(SUITE.glob("*/data/*.jsonl")) + sorted(SUITE.glob("*/corpus/*.jsonl")):
        twin = copy / path.relative_to(SUITE)
        digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (path, twin)]
        assert digest[0] == digest[1], (
            f"{path.relative_to(ROOT)} differs from what the generators write"
        )


@pytest.mark.parametrize("name", TENANTS)
def test_every_defect_has_ground_truth_and_its_fix_alone_changes_scores(name: str) -> None:
    root = SUITE / name
    gt = derive(root, "train")
    assert sum(s >= FAIL_BELOW for s in gt.full.values()) >= 0.95 * len(gt.full), (
        "with every fix applied the tenant should pass almost everything"
    )
    assert sum(gt.baseline.values()) < sum(gt.full.values())
    done: dict[tuple[str, ...], dict[str, float]] = {(): gt.baseline}
    for d in gt.defects:
        assert gt.caused_by(d.id), f"{name}: leaving out {d.id} breaks no example"
        if d.needs not in done:
            done[d.needs] = scores(variant(root, list(d.needs)), "train")
        before = done[d.needs]
        after = scores(variant(root, [*d.needs, d.id]), "train")
        changed = sum(before[i] != after[i] for i in before)
        assert changed, f"{name}: the fix of {d.id} (with {list(d.needs)}) changes no score"


def test_visible_without_checks_needs_a_check_free_fix_that_repairs_alone() -> None:
    """The bench's "an intervention can see the cause" subset: a parameter or noise defect whose
    fix alone repairs the example; a prompt's content or a masked parameter is not visible."""
    from ground_truth import Defect, GroundTruth

    def d(i: str, level: str, kind: str) -> Defect:
        return Defect(id=i, step="s", level=level, shows_at="s", kind=kind, description="")

    ids = ["e1", "e2", "e3", "e4"]
    zero = dict.fromkeys(ids, 0.0)
    gt = GroundTruth(
        tenant="t",
        split="train",
        defects=[
            d("p", "parameter", "upstream"),
            d("n", "structure", "noise (hard-coded)"),
            d("c", "prompt", "content"),
            d("m", "parameter", "masked"),
        ],
        baseline=zero,
        full=dict.fromkeys(ids, 1.0),
        # each example is caused by one defect
        leave_out={
            f: {**dict.fromkeys(ids, 1.0), e: 0.0} for f, e in zip("pncm", ids, strict=True)
        },
        alone={
            "p": {**zero, "e1": 1.0},
            "n": {**zero, "e2": 1.0},
            "c": {**zero, "e3": 1.0},
            "m": zero,  # its fix alone repairs nothing: another defect masks it
        },
    )
    assert gt.visible_without_checks() == {"e1", "e2"}

"""Ground truth of the planted-defect suite, derived by evaluation (never written by hand).

For a tenant with planted defects D1..Dn (defects.yaml, fixes under fixes/<id>/):

- *full*: every fix applied; *baseline*: none (the tenant folder as it is);
- *leave F out*: every fix but F. An example that passes with every fix and fails when only F is
  left out is caused by F's (step, level). An example may have several causes (it fails in more
  than one leave-one-out variant); attribution is right for it if it names any of them.

    .venv/bin/python bench/planted/ground_truth.py [TENANT ...] [--split train]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fapo.evaluate import evaluate  # noqa: E402
from fapo.settings import Settings  # noqa: E402
from fapo.tenant import Tenant, load_tenant  # noqa: E402

FAIL_BELOW = 0.999  # the same threshold fapo.attribute uses for a failing example


@dataclass(frozen=True)
class Defect:
    """One planted defect: its true cause (step, level) and the files of its fix."""

    id: str
    step: str
    level: str
    shows_at: str
    kind: str
    description: str
    needs: tuple[str, ...] = ()  # fixes without which this defect's failures cannot show
    # Why the built-in agent (fixed moves, no LLM) is not expected to fix it; empty: it is. Such
    # defects are still measured, and counted separately (issue 12 allows excluding content only
    # an LLM could write).
    builtin_excluded: str = ""

    @property
    def check_free(self) -> bool:
        """Can an intervention that needs no checks.py show this defect? A parameter move sets a
        declared parameter, a resample removes sampling noise; nothing but an oracle (checks.py)
        or a reference model stands in for a prompt's or the code's missing content."""
        return self.level == "parameter" or self.kind.startswith("noise")


@dataclass
class GroundTruth:
    """Per-example scores of the baseline, the fully fixed variant and each leave-one-out."""

    tenant: str
    split: str
    defects: list[Defect]
    baseline: dict[str, float]
    full: dict[str, float]
    leave_out: dict[str, dict[str, float]] = field(default_factory=dict)
    alone: dict[str, dict[str, float]] = field(default_factory=dict)  # only this fix applied

    def visible_without_checks(self) -> set[str]:
        """Failing examples one check-free intervention can show the cause of: a cause whose
        kind such an intervention performs (`Defect.check_free`) and whose fix alone, on the
        broken baseline, makes the example pass. The rest only recover when a second defect is
        repaired too (a masked or a jointly needed fix) or need content an oracle supplies."""
        causes = self.causes()
        by_id = {d.id: d for d in self.defects}
        return {
            i
            for i, ids in causes.items()
            if self.baseline.get(i, 1.0) < FAIL_BELOW
            and any(
                by_id[f].check_free and self.alone.get(f, {}).get(i, 0.0) >= FAIL_BELOW for f in ids
            )
        }

    def caused_by(self, defect_id: str) -> list[str]:
        """Examples that pass with every fix and fail when only this defect's fix is left out."""
        scores = self.leave_out[defect_id]
        return sorted(
            i for i, s in scores.items() if s < FAIL_BELOW and self.full.get(i, 0.0) >= FAIL_BELOW
        )

    def causes(self) -> dict[str, list[str]]:
        """Example id -> the defects that cause it (only examples with at least one cause)."""
        out: dict[str, list[str]] = {}
        for d in self.defects:
            for i in self.caused_by(d.id):
                out.setdefault(i, []).append(d.id)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "split": self.split,
            "defects": [{**d.__dict__, "needs": list(d.needs)} for d in self.defects],
            "baseline_mean": _mean(self.baseline),
            "full_mean": _mean(self.full),
            "leave_out_mean": {k: _mean(v) for k, v in self.leave_out.items()},
            "caused_by": {d.id: self.caused_by(d.id) for d in self.defects},
            "visible_without_checks": sorted(self.visible_without_checks()),
        }


def _mean(scores: dict[str, float]) -> float:
    return round(sum(scores.values()) / len(scores), 4) if scores else 0.0


def suite_dirs() -> list[Path]:
    """Every tenant folder of the suite (those with a tenant.yaml and a defects.yaml)."""
    return sorted(
        p
        for p in HERE.iterdir()
        if (p / "tenant.yaml").is_file() and (p / "defects.yaml").is_file()
    )


def load_defects(root: Path) -> list[Defect]:
    data = yaml.safe_load((root / "defects.yaml").read_text(encoding="utf-8"))
    return [
        Defect(**{k: tuple(v) if k == "needs" else str(v) for k, v in d.items()})
        for d in data["defects"]
    ]


def fix_files(
    root: Path, ids: list[str], base: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """The variant overlay that applies the fixes `ids` on top of `base` (the mutable files of the
    variant to fix; default: the tenant folder's own). params.yaml keys are merged, structure.yaml
    transforms appended, any other fixed file replaces the base's."""
    if base is None:
        base = {
            rel: (root / rel).read_text(encoding="utf-8")
            for rel in ("params.yaml", "structure.yaml")
            if (root / rel).is_file()
        }
    params = yaml.safe_load(base.get("params.yaml") or "") or {}
    structure = yaml.safe_load(base.get("structure.yaml") or "") or {}
    transforms = list(structure.get("transforms") or [])
    files: dict[str, str | None] = {}
    owner: dict[str, str] = {}
    changed_params = changed_structure = False
    for fid in ids:
        fix_dir = root / "fixes" / fid
        if not fix_dir.is_dir():
            raise SystemExit(f"{root.name}: defects.yaml names {fid} but fixes/{fid}/ is missing")
        for p in sorted(fix_dir.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(fix_dir).as_posix()
            text = p.read_text(encoding="utf-8")
            if rel == "params.yaml":
                params.update(yaml.safe_load(text) or {})
                changed_params = True
            elif rel == "structure.yaml":
                transforms += list((yaml.safe_load(text) or {}).get("transforms") or [])
                changed_structure = True
            else:
                if rel in owner:
                    raise SystemExit(
                        f"{root.name}: fixes {owner[rel]} and {fid} both replace {rel}"
                    )
                owner[rel] = fid
                files[rel] = text
    if changed_params:
        files["params.yaml"] = yaml.safe_dump(params, sort_keys=False)
    if changed_structure:
        files["structure.yaml"] = yaml.safe_dump({"transforms": transforms}, sort_keys=False)
    return files


def variant(root: Path, ids: list[str], settings: Settings | None = None) -> Tenant:
    return load_tenant(root, settings).variant(fix_files(root, ids))


def scores(tenant: Tenant, split: str, *, concurrency: int = 8) -> dict[str, float]:
    """Per-example scores of one evaluation (no call cache: the simulator is cheap and exact)."""
    return dict(evaluate(tenant, split, use_cache=False, concurrency=concurrency).scores)


def derive(
    root: Path, split: str = "train", settings: Settings | None = None, *, alone: bool = False
) -> GroundTruth:
    """Evaluate baseline, full fix and every leave-one-out on `split` (and, with `alone`, every
    fix on its own)."""
    defects = load_defects(root)
    ids = [d.id for d in defects]
    gt = GroundTruth(
        tenant=root.name,
        split=split,
        defects=defects,
        baseline=scores(load_tenant(root, settings), split),
        full=scores(variant(root, ids, settings), split),
    )
    for d in defects:
        gt.leave_out[d.id] = scores(variant(root, [i for i in ids if i != d.id], settings), split)
        if alone:
            gt.alone[d.id] = scores(variant(root, [d.id], settings), split)
    return gt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tenants", nargs="*", help="tenant folder names (default: the whole suite)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--json", action="store_true", help="print the ground truth as JSON")
    args = ap.parse_args(argv)
    dirs = [HERE / t for t in args.tenants] if args.tenants else suite_dirs()
    for root in dirs:
        gt = derive(root, args.split)
        if args.json:
            print(json.dumps(gt.as_dict()))
            continue
        print(
            f"{root.name} ({args.split}): baseline {_mean(gt.baseline):.3f}, "
            f"all fixes {_mean(gt.full):.3f}"
        )
        for d in gt.defects:
            caused = gt.caused_by(d.id)
            print(
                f"  {d.id:<18} {d.step}/{d.level:<10} left out {_mean(gt.leave_out[d.id]):.3f}"
                f"  causes {len(caused)} examples"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

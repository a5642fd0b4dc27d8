"""Dataset rows: JSONL `{"id", "inputs", "label"}`, checked line by line with `file:line` errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from fapo.errors import FapoError
from fapo.records import Example

_KEYS = {"id", "inputs", "label"}


def _row(path: Path, lineno: int, line: str) -> Example:
    where = f"{path}:{lineno}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FapoError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line") from None
    if not isinstance(obj, dict):
        raise FapoError(f"{where}: a row must be a JSON object with id, inputs, label")
    missing = _KEYS - obj.keys()
    if missing:
        raise FapoError(f"{where}: missing key '{sorted(missing)[0]}'; rows need id, inputs, label")
    extra = obj.keys() - _KEYS
    if extra:
        raise FapoError(
            f"{where}: unknown key '{sorted(extra)[0]}'; rows hold only id, inputs, label"
        )
    rid = obj["id"]
    if not isinstance(rid, str | int) or isinstance(rid, bool) or str(rid) == "":
        raise FapoError(f"{where}: 'id' must be a non-empty string or integer")
    if not isinstance(obj["inputs"], dict):
        raise FapoError(f"{where}: 'inputs' must be an object of state keys the chain reads")
    return Example(id=str(rid), inputs=obj["inputs"], label=obj["label"])


def iter_rows(path: Path) -> Iterator[Example]:
    """Stream rows, failing on the first bad one (and on a duplicate id) with file:line."""
    if not path.is_file():
        raise FapoError(f"{path}: data file not found; create it or fix tenant.yaml 'data'")
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            ex = _row(path, lineno, line)
            if ex.id in seen:
                raise FapoError(f"{path}:{lineno}: duplicate id '{ex.id}'; ids must be unique")
            seen.add(ex.id)
            yield ex


def count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def load_rows(path: Path) -> list[Example]:
    return list(iter_rows(path))

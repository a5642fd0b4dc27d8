"""Dataset rows: JSONL `{"id", "inputs", "label"}`, checked line by line with `file:line` errors."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from fapo.errors import FapoError, fs_error
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


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line; a bad byte or read error is one line."""
    if not path.is_file():
        if path.exists():
            raise FapoError(f"{path}: is not a file; the data split must be a JSONL file")
        raise FapoError(f"{path}: data file not found; create it or fix tenant.yaml 'data'")
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FapoError(
                        f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); "
                        "save the file as UTF-8"
                    ) from None
                if line.strip():
                    yield lineno, line
    except OSError as exc:
        raise fs_error(exc, path) from None


def iter_rows(path: Path) -> Iterator[Example]:
    """Stream rows, failing on the first bad one (and on a duplicate id) with file:line."""
    seen: set[str] = set()
    for lineno, line in _lines(path):
        ex = _row(path, lineno, line)
        if ex.id in seen:
            raise FapoError(f"{path}:{lineno}: duplicate id '{ex.id}'; ids must be unique")
        seen.add(ex.id)
        yield ex


def count_rows(path: Path) -> int:
    return sum(1 for _ in _lines(path))


def load_rows(path: Path) -> list[Example]:
    return list(iter_rows(path))


def split_problems(paths: Mapping[str, Path]) -> list[str]:
    """Every problem of the splits together, each once: a bad row (the first per file), an
    empty split, an id found in more than one split. Decisions on n = 0 mean nothing, and a row
    in two splits lets validation or test leak into what the agent sees."""
    problems: list[str] = []
    owner: dict[str, str] = {}
    for split, path in paths.items():
        ids: list[str] = []
        try:
            ids = [ex.id for ex in iter_rows(path)]
        except FapoError as exc:
            problems.append(str(exc))
            continue
        if not ids:
            problems.append(
                f"{path}: the {split} split has no rows; add examples (one JSON object a line)"
            )
        shared = [i for i in ids if i in owner]
        if shared:
            problems.append(
                f"{path}: id '{shared[0]}' is also in the {owner[shared[0]]} split"
                + (f" ({len(shared)} shared ids)" if len(shared) > 1 else "")
                + "; a row may appear in one split only"
            )
        for i in ids:
            owner.setdefault(i, split)
    return problems

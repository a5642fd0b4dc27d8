"""`events.jsonl`: the append-only truth of a run, for resume and audit.

Each completed stage is one line `{"seq", "kind", "key", "data", "budget", "t"}`, flushed and
fsynced before the loop moves on. On resume the loop re-walks its logic and `memo` returns the
recorded result of every stage already done, so nothing finished is redone. `data` is a stage
record (`fapo.records`) dumped as JSON on write and validated back into its type on replay.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fapo.errors import FapoError

R = TypeVar("R", bound=BaseModel)


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._index: dict[tuple[str, str], dict[str, Any]] = {}
        if path.is_file():
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        ev = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a torn last line from a kill: everything before it stands
                    self._add(ev)
            self._truncate_to_valid()

    def _truncate_to_valid(self) -> None:
        text = "".join(json.dumps(e, default=str) + "\n" for e in self.events)
        if self.path.read_text(encoding="utf-8") != text:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)

    def _add(self, ev: dict[str, Any]) -> None:
        self.events.append(ev)
        self._index[(ev["kind"], ev["key"])] = ev

    def find(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._index.get((kind, key))

    def append(
        self, kind: str, key: str, data: Any, budget: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        ev = {
            "seq": len(self.events),
            "kind": kind,
            "key": key,
            "data": data,
            "budget": budget,
            "t": time.time(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(ev, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._add(ev)
        return ev

    def memo(
        self,
        kind: str,
        key: str,
        record: type[R],
        fn: Callable[[], R],
        budget: Callable[[], dict[str, Any]] | None = None,
    ) -> tuple[R, bool]:
        """(result, replayed): the recorded result if this stage finished before, else run it."""
        ev = self.find(kind, key)
        if ev is not None:
            try:
                return record.model_validate(ev["data"]), True
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"]) or "data"
                raise FapoError(
                    f"{self.path}: event {ev.get('seq')} ({kind} {key}) is not a valid "
                    f"{record.__name__} ({where}: {err['msg']}); it was written by another fapo "
                    "version: start a new run"
                ) from None
        data = fn()
        self.append(
            kind, key, data.model_dump(mode="json", by_alias=True), budget() if budget else None
        )
        return data, False

    def last_budget(self) -> dict[str, Any] | None:
        for ev in reversed(self.events):
            budget: dict[str, Any] | None = ev.get("budget")
            if budget:
                return budget
        return None

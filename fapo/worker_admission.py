"""Admission of examples to the sandboxed worker: together, or one alone after a failure."""

from __future__ import annotations

import asyncio


class Admission:
    """Examples in flight in one worker; see `admit`."""

    def __init__(self) -> None:
        self._turn = asyncio.Condition()
        self.inflight = self._waiting_alone = 0
        self._alone = False

    async def admit(self, alone: bool) -> None:
        """Shared admission, or (`alone`) wait until nothing else is in flight and hold
        new examples back: a retry after a hang or crash runs by itself, so the blame for
        the next one falls on exactly the example that caused it."""
        async with self._turn:
            if alone:
                self._waiting_alone += 1
                await self._turn.wait_for(lambda: self.inflight == 0 and not self._alone)
                self._waiting_alone -= 1
                self._alone = True
            else:
                await self._turn.wait_for(lambda: not self._alone and not self._waiting_alone)
            self.inflight += 1

    async def release(self, alone: bool) -> None:
        async with self._turn:
            self.inflight -= 1
            self._alone = self._alone and not alone
            self._turn.notify_all()

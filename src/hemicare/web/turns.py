"""Turns for CPU-heavy requests on the event loop: first come, first served, a few per pass of the loop.

A plan request computes for about half a millisecond without awaiting anything, on the event loop itself (a thread
would cost more than the work). Left alone, the loop reads every request that arrived while it was busy, then
computes all of them in one pass, and only then looks at its sockets again. The kernel reports the ready sockets of
a level-triggered epoll in the order they were reported last time, with newcomers at the end, so a client whose
answer went out last in one pass sends its next request just after the loop looked, waits out the whole next pass,
is served last again, and so on: one connection in fifty waited twice as long as the others, pass after pass
(measured with bench/web_load.py; p99 about twice p50).

With turns, a heavy request asks for its turn once it has its input; turns are handed out in the order they were
asked for, at most ``per_pass`` of them in one pass of the loop. Between two groups the loop looks at its sockets,
so a new request joins the queue within a few milliseconds of arriving, and everyone waits about as long as the
work queued ahead of them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Turns:
    """First-come, first-served turns, at most ``per_pass`` of them in one pass of the event loop.

    Every caller waits at least until the next pass, so that callers arriving in one pass queue up in order instead
    of each finding the turns free. One instance serves one event loop at a time; it moves to another loop once the
    first is closed or has nobody queued.
    """

    def __init__(self, *, per_pass: int) -> None:
        if per_pass < 1:
            raise ValueError(f"per_pass must be at least 1, not {per_pass}")
        self.per_pass = per_pass
        self._start(None)

    def _start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._given = 0  # turns of the current group handed out and not yet over
        self._handing_out = False  # a hand-out is scheduled for the next pass

    @property
    def idle(self) -> bool:
        """Nobody has a turn or waits for one."""
        return not self._waiting and not self._given and not self._handing_out

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for this caller's turn; the turn lasts as long as the ``async with`` body."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._loop is not None and not self._loop.is_closed() and not self.idle:
                raise RuntimeError("these turns are in use on another event loop")
            self._start(loop)  # whatever a closed loop left queued will never run
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiting.append(waiter)
        if not self._given and not self._handing_out:
            self._handing_out = True
            loop.call_soon(self._hand_out)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():  # cancelled while waiting: leave the queue
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
            else:  # given a turn, then cancelled before it began: pass the turn on
                self._over()
            raise
        try:
            yield
        finally:
            self._over()

    def _hand_out(self) -> None:
        self._handing_out = False
        while self._waiting and self._given < self.per_pass:
            waiter = self._waiting.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                # It resumes in the next pass of the loop, after the loop has looked at its sockets.
                waiter.set_result(None)
                self._given += 1

    def _over(self) -> None:
        self._given -= 1
        if not self._given:
            self._hand_out()

"""Turns for CPU-heavy requests: arrival order, a bounded number per pass of the loop, nothing lost on cancel."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from hemicare.web.turns import Turns


class Passes:
    """Counts passes of the running event loop: a callback that schedules itself again runs once per pass."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def start(self) -> None:
        self._tick()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


@pytest.mark.parametrize("per_pass", [1, 3, 4])
def test_turns_go_in_arrival_order_and_at_most_per_pass_in_one_pass(per_pass: int) -> None:
    turns = Turns(per_pass=per_pass)
    taken: list[tuple[int, int]] = []  # (caller, pass)

    async def caller(number: int, passes: Passes) -> None:
        async with turns.turn():
            taken.append((number, passes.count))

    async def main() -> None:
        passes = Passes()
        passes.start()
        await asyncio.gather(*(caller(number, passes) for number in range(10)))
        passes.stop()

    asyncio.run(main())
    assert [number for number, _ in taken] == list(range(10))
    per_pass_seen = Counter(tick for _, tick in taken)
    assert max(per_pass_seen.values()) <= per_pass
    assert len(per_pass_seen) >= -(-10 // per_pass)  # the loop came round between groups
    assert turns.idle


def test_a_caller_arriving_alone_waits_no_more_than_two_passes() -> None:
    turns = Turns(per_pass=4)

    async def main() -> int:
        passes = Passes()
        passes.start()
        before = passes.count
        async with turns.turn():
            during = passes.count
        passes.stop()
        return during - before

    assert 1 <= asyncio.run(main()) <= 2
    assert turns.idle


def test_a_caller_arriving_while_others_compute_queues_behind_those_waiting() -> None:
    """Callers 0-5 queue up; caller 6 arrives while the first group computes; it is served seventh."""
    turns = Turns(per_pass=2)
    order: list[int] = []

    async def caller(number: int) -> None:
        async with turns.turn():
            order.append(number)
            if number == 0:
                late.append(asyncio.ensure_future(caller(6)))

    late: list[asyncio.Future[None]] = []

    async def main() -> None:
        await asyncio.gather(*(caller(number) for number in range(6)))
        await asyncio.gather(*late)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4, 5, 6]
    assert turns.idle


def test_a_caller_cancelled_while_waiting_leaves_the_queue() -> None:
    turns = Turns(per_pass=1)
    order: list[str] = []

    async def main() -> None:
        release = asyncio.Event()

        async def holder() -> None:
            async with turns.turn():
                order.append("holder")
                await release.wait()

        async def waiter(name: str) -> None:
            async with turns.turn():
                order.append(name)

        first = asyncio.create_task(holder())
        await asyncio.sleep(0)
        second = asyncio.create_task(waiter("second"))
        third = asyncio.create_task(waiter("third"))
        await asyncio.sleep(0)
        second.cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, third)
        with pytest.raises(asyncio.CancelledError):
            await second

    asyncio.run(main())
    assert order == ["holder", "third"]
    assert turns.idle


def test_a_caller_cancelled_after_being_given_its_turn_passes_it_on() -> None:
    turns = Turns(per_pass=1)
    order: list[str] = []
    tasks: dict[str, asyncio.Task[None]] = {}

    async def caller(name: str) -> None:
        async with turns.turn():
            order.append(name)
        if name == "first":
            # The turn just went to "second", which has not resumed yet.
            assert turns._given == 1
            tasks["second"].cancel()

    async def main() -> None:
        for name in ("first", "second", "third"):
            tasks[name] = asyncio.create_task(caller(name))
        await asyncio.gather(tasks["first"], tasks["third"])
        with pytest.raises(asyncio.CancelledError):
            await tasks["second"]

    asyncio.run(main())
    assert order == ["first", "third"]
    assert turns.idle


def test_an_error_in_a_turn_ends_it() -> None:
    turns = Turns(per_pass=1)

    async def failing() -> None:
        async with turns.turn():
            raise RuntimeError("the work failed")

    async def fine() -> str:
        async with turns.turn():
            return "served"

    async def main() -> list[object]:
        return await asyncio.gather(failing(), fine(), return_exceptions=True)

    failed, served = asyncio.run(main())
    assert isinstance(failed, RuntimeError)
    assert served == "served"
    assert turns.idle


def test_turns_move_to_a_new_loop_once_the_old_one_is_closed() -> None:
    turns = Turns(per_pass=1)
    old = asyncio.new_event_loop()
    stranded_tasks: list[asyncio.Task[None]] = []

    async def stranded() -> None:
        async def holder() -> None:
            async with turns.turn():
                await asyncio.Event().wait()  # never set: the loop closes under it

        async def waiter() -> None:
            async with turns.turn():
                pass

        stranded_tasks.extend([old.create_task(holder()), old.create_task(waiter())])
        for _ in range(5):
            await asyncio.sleep(0)

    old.run_until_complete(stranded())
    assert not turns.idle
    old.close()

    async def fresh() -> str:
        async with turns.turn():
            return "served"

    assert asyncio.run(fresh()) == "served"
    assert turns.idle


def test_turns_refuse_a_second_loop_while_the_first_still_uses_them() -> None:
    turns = Turns(per_pass=1)
    first = asyncio.new_event_loop()
    release = asyncio.Event()
    held: list[asyncio.Task[None]] = []

    async def holder() -> None:
        async with turns.turn():
            await release.wait()

    async def start() -> None:
        held.append(first.create_task(holder()))
        for _ in range(3):
            await asyncio.sleep(0)

    try:
        first.run_until_complete(start())

        async def elsewhere() -> None:
            async with turns.turn():
                pass

        with pytest.raises(RuntimeError, match="in use on another event loop"):
            asyncio.run(elsewhere())
    finally:
        for task in held:
            task.cancel()
        first.run_until_complete(asyncio.sleep(0))
        first.close()


def test_per_pass_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_pass must be at least 1, not 0"):
        Turns(per_pass=0)

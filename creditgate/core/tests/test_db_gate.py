"""The gate in front of the database pool lets through at most the pool's size of sync parts at
once, in arrival order; without a pool, it lets everything through."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from asgiref.sync import sync_to_async

from creditgate.core import db_gate


def _run_through_gate(n: int, *, crowd: int) -> tuple[int, list[int]]:
    """`n` sync parts through the gate at once, each holding its place until `crowd` are inside
    together (or 0.1 s passed): the most inside at a time, and the order they got in."""
    inside, most, order = 0, 0, []
    lock = threading.Lock()
    crowded = threading.Event()

    def part(k: int) -> None:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
            order.append(k)
            if inside >= crowd:
                crowded.set()
        crowded.wait(timeout=0.1)
        with lock:
            inside -= 1

    async def one(k: int) -> None:
        async with db_gate.db_gate():
            await sync_to_async(part, thread_sensitive=False)(k)

    async def everyone() -> None:
        await asyncio.gather(*(one(k) for k in range(n)))

    asyncio.run(everyone())
    return most, order


def test_at_most_the_pools_size_run_at_once(monkeypatch):
    monkeypatch.setattr(db_gate, "_size", lambda: 2)
    most, order = _run_through_gate(8, crowd=3)
    assert most == 2 and sorted(order) == list(range(8))


def test_one_place_lets_them_through_in_arrival_order(monkeypatch):
    monkeypatch.setattr(db_gate, "_size", lambda: 1)
    _, order = _run_through_gate(5, crowd=2)
    assert order == list(range(5))


def test_without_a_pool_nothing_waits(monkeypatch):
    monkeypatch.setattr(db_gate, "_size", lambda: 0)
    most, _ = _run_through_gate(6, crowd=6)
    assert most == 6
    assert isinstance(db_gate.db_gate(), contextlib.nullcontext)

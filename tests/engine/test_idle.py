"""Idle strategies: `Doorbell` (worker wake-ups) and the busy-polling event loop."""

import asyncio
import socket
import threading
import time

import pytest

from tradesim.engine.busypoll import BusyPollSelector, new_busy_poll_loop
from tradesim.engine.idle import Doorbell, spin_until_readable
from tradesim.engine.workers import WorkerPool


@pytest.mark.parametrize("spin_s", [0.0, 0.05])
def test_wait_returns_the_new_sequence_after_a_ring_from_another_thread(spin_s):
    bell = Doorbell()
    start = bell.seq
    threading.Timer(0.02, bell.ring).start()
    assert bell.wait(start, spin_s, 5.0) == start + 1


@pytest.mark.parametrize("spin_s", [0.0, 0.01])
def test_wait_times_out_with_the_old_sequence(spin_s):
    bell = Doorbell()
    assert bell.wait(bell.seq, spin_s, 0.03) == 0


def test_wait_returns_at_once_when_the_counter_already_moved():
    bell = Doorbell()
    bell.ring()
    bell.ring()
    assert bell.wait(0, 0.0, None) == 2   # no timeout: would hang if the ring were lost


@pytest.mark.parametrize("spin_s", [0.0, 1e-4])
def test_no_wake_up_is_lost_between_looking_and_waiting(spin_s):
    """Producer/consumer over a deque, the way WorkerPool uses it: every item is taken."""
    from collections import deque

    bell, items, taken = Doorbell(), deque(), []
    n = 20_000

    def consume():
        while len(taken) < n:
            seq = bell.seq
            try:
                taken.append(items.popleft())
            except IndexError:
                bell.wait(seq, spin_s, 5.0)

    th = threading.Thread(target=consume)
    th.start()
    for i in range(n):
        items.append(i)
        bell.ring()
        if i % 97 == 0:
            time.sleep(0)  # let the consumer park now and then
    th.join(30)
    assert not th.is_alive() and taken == list(range(n))


def test_spin_until_readable_sees_data_and_times_out():
    a, b = socket.socketpair()
    try:
        t0 = time.monotonic()
        assert spin_until_readable(a.fileno(), 0.02) is False
        assert time.monotonic() - t0 >= 0.015
        b.send(b"x")
        assert spin_until_readable(a.fileno(), 5.0) is True
    finally:
        a.close()
        b.close()


def test_busy_poll_selector_rejects_a_bad_spin():
    with pytest.raises(ValueError, match="spin_us"):
        BusyPollSelector(0)


def test_busy_poll_loop_runs_callbacks_timers_and_sockets():
    async def main():
        loop = asyncio.get_running_loop()
        r, w = socket.socketpair()
        r.setblocking(False)
        got = loop.create_future()
        loop.add_reader(r.fileno(), lambda: got.set_result(r.recv(16)))
        loop.call_later(0.01, w.send, b"ping")
        t0 = time.monotonic()
        await asyncio.sleep(0.02)   # a timer longer than one spin
        assert time.monotonic() - t0 >= 0.015
        assert await asyncio.wait_for(got, 5) == b"ping"
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)   # the self-pipe wakes a spinning loop too
        await asyncio.sleep(0.01)
        assert done.is_set()
        loop.remove_reader(r.fileno())
        r.close()
        w.close()

    with asyncio.Runner(loop_factory=lambda: new_busy_poll_loop(2000)) as runner:
        runner.run(main())


@pytest.mark.parametrize("spin_s", [0.0, 0.001])
def test_worker_pool_drains_everything_and_shuts_down(spin_s):
    class Item:
        def __init__(self):
            self.count = 0
            self.lock = threading.Lock()

        def drain(self):
            with self.lock:
                self.count += 1
            return False

    pool = WorkerPool(2, spin_s=spin_s)
    pool.start()
    items = [Item() for _ in range(500)]
    for it in items:
        pool.schedule(it)
    deadline = time.monotonic() + 10
    while any(it.count == 0 for it in items) and time.monotonic() < deadline:
        time.sleep(0.001)
    pool.shutdown()
    assert all(it.count == 1 for it in items)
    assert pool.size == 0


def test_worker_pool_rejects_a_negative_spin():
    with pytest.raises(ValueError, match="spin_s"):
        WorkerPool(1, spin_s=-1)


def test_wait_quiet_returns_once_the_work_is_done_and_times_out_while_it_is_not():
    bell = Doorbell()
    assert bell.wait_quiet(0.0)            # nothing handed out: quiet at once
    bell.add_work()
    bell.add_work()
    assert bell.outstanding == 2
    t0 = time.monotonic()
    assert not bell.wait_quiet(0.02)       # still outstanding: gives up after the bound
    assert time.monotonic() - t0 >= 0.015
    bell.work_done()
    threading.Timer(0.02, bell.work_done).start()
    assert bell.wait_quiet(5.0)            # returns when the last item is done, not at the bound
    assert bell.outstanding == 0


@pytest.mark.parametrize("spin_s", [0.0, 0.05])
def test_worker_pool_wait_quiet_lets_queued_work_finish_first(spin_s):
    """The busy-poll hand-off: after `wait_quiet`, what was queued has run (GIL released meanwhile)."""
    pool = WorkerPool(1, spin_s=spin_s)
    pool.start()
    done = []

    class Item:
        def drain(self):
            time.sleep(0.01)   # a slow strategy call
            done.append(1)
            return False

    try:
        for i in range(3):
            pool.schedule(Item())
            assert pool.wait_quiet(5.0)
            assert len(done) == i + 1
        assert pool._bell.outstanding == 0
        pool.schedule(Item())
        assert not pool.wait_quiet(0.001)   # bounded: the loop never waits long for a slow call
    finally:
        pool.shutdown()

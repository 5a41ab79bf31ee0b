"""prefetch(): a generator stage on its own thread behind a bounded queue, that forwards errors and stops."""

from __future__ import annotations

import threading
import time

import pytest

from avfuse.stream.media.prefetch import prefetch


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_items_in_order_and_produced_on_another_thread():
    seen = []

    def gen():
        for i in range(100):
            seen.append(threading.current_thread().name)
            yield i

    assert list(prefetch(gen(), 4, name="pf-order")) == list(range(100))
    assert set(seen) == {"pf-order"}


def test_queue_is_bounded():
    made = []

    def gen():
        for i in range(1000):
            made.append(i)
            yield i

    it = prefetch(gen(), 3, name="pf-bound")
    assert next(it) == 0
    time.sleep(0.3)
    assert len(made) <= 1 + 3 + 1  # the one consumed, a full queue, one waiting to be put
    it.close()


def test_upstream_exception_reaches_the_consumer():
    class Boom(RuntimeError):
        pass

    def gen():
        yield 1
        yield 2
        raise Boom("decoder failed at item 3")

    got = []
    with pytest.raises(Boom, match="item 3"):
        for x in prefetch(gen(), 1, name="pf-err"):
            got.append(x)
    assert got == [1, 2]


def test_an_upstream_that_cannot_start_or_fails_to_close_reaches_the_consumer():
    class Unopenable:
        def __iter__(self):
            raise OSError("cannot open the source")

    with pytest.raises(OSError, match="cannot open"):
        list(prefetch(Unopenable(), 2, name="pf-iter"))

    def gen():
        try:
            yield 1
        finally:
            raise RuntimeError("close failed")

    it = prefetch(gen(), 2, name="pf-close")
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="close failed"):
        next(it)


def test_consumer_stopping_early_stops_the_producer_and_runs_its_cleanup():
    cleaned = threading.Event()

    def gen():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            cleaned.set()

    it = prefetch(gen(), 2, name="pf-stop")
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()
    assert cleaned.wait(2) and not threads_named("pf-stop")


def test_break_out_of_a_for_loop_does_not_hang():
    def gen():
        yield from range(10**9)

    start = time.monotonic()
    for x in prefetch(gen(), 1, name="pf-break"):
        if x == 3:
            break
    assert time.monotonic() - start < 5 and not threads_named("pf-break")


def test_bad_size():
    with pytest.raises(ValueError, match="size"):
        prefetch(iter(()), 0)

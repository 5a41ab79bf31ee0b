"""Run a generator stage on its own thread behind a bounded queue.

Unlike torchcodec's helper, exceptions raised upstream reach the consumer (re-raised in its thread,
with the original traceback), and a consumer that stops early stops the producer: nothing hangs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_POLL_S = 0.1
_JOIN_S = 5.0


class _Done:
    pass


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def offer(q: queue.Queue, item: object, gone: threading.Event) -> bool:
    """Put ``item`` on ``q``, waiting for room until ``gone`` is set (then False: the consumer left)."""
    while not gone.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def prefetch(upstream: Iterable[T], size: int, *, name: str = "prefetch") -> Generator[T, None, None]:
    """Iterate ``upstream`` on a daemon thread, at most ``size`` items ahead of the consumer."""
    if size < 1:
        raise ValueError(f"prefetch size must be >= 1, got {size}")
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        return offer(q, item, stop)

    def produce() -> None:
        try:
            it = iter(upstream)
            try:
                for item in it:
                    if not put(item):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # runs the upstream's finally blocks in the thread that ran it
        except BaseException as e:  # forwarded to the consumer, which re-raises it
            if not put(_Failed(e)):
                log.warning("%s: upstream failed after the consumer stopped: %s", name, e)
        else:
            put(_Done())

    thread = threading.Thread(target=produce, name=name, daemon=True)

    def _get():
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError(f"{name}: the producer thread ended without a result") from None

    def consume() -> Generator[T, None, None]:
        thread.start()
        try:
            while True:
                item = _get()
                if isinstance(item, _Done):
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            while True:  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
            thread.join(_JOIN_S)
            if thread.is_alive():
                log.warning("%s: producer still busy after %.0f s; left running as a daemon", name, _JOIN_S)

    return consume()

"""Bounded queues between pipeline stages, and micro-batching.

``Channel`` is a bounded queue with two policies: ``block`` (files: backpressure, nothing is lost)
and ``drop_oldest`` (live sources: when the consumer is behind, the oldest item goes, of the source
with the most queued when items have a ``group``, and ``dropped`` counts it). A producer ends a
channel with ``close()`` or hands its error on with ``fail(exc)``; the consumer then gets the items already
queued, followed by the end of iteration or the error raised.
Nothing waits forever: ``put`` on a closed channel returns False, ``get`` on a closed empty one ends.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from avfuse.stream.errors import ConfigError

T = TypeVar("T")
POLICIES = ("block", "drop_oldest")


class Closed(Exception):
    """Raised by ``Channel.get`` once the channel is closed and drained."""


class Channel(Generic[T]):
    def __init__(self, maxsize: int, *, policy: str = "block", name: str = "channel",
                 droppable: Callable[[T], bool] | None = None, on_drop: Callable[[T], None] | None = None,
                 group: Callable[[T], Hashable] | None = None) -> None:
        """``droppable``: which items drop_oldest may discard (default all); when none of the queued
        items may go (end-of-source markers, say), ``put`` waits as under ``block``. ``on_drop`` is
        called with each discarded item (under the channel's lock: keep it short), so that several
        producers can count their drops without racing on ``dropped``. ``group`` (the source of an
        item, say) shares the drops out: the oldest item of the group with the most droppable items
        queued goes, so a fast source cannot push a slow one's segments out."""
        if maxsize < 1:
            raise ConfigError(f"{name}: queue size must be >= 1, got {maxsize}")
        if policy not in POLICIES:
            raise ConfigError(f"{name}: queue policy must be one of {POLICIES}, got {policy!r}")
        self.maxsize, self.policy, self.name = maxsize, policy, name
        self.droppable = droppable or (lambda item: True)
        self.on_drop = on_drop
        self.group = group
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self.dropped = 0  # items discarded by drop_oldest

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Queue ``item``; False if the channel was closed (the consumer has gone) or ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed and len(self._items) >= self.maxsize:
                if self.policy == "drop_oldest" and self.droppable(item) and self._drop_one():
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def _victim(self) -> int | None:
        """Index of the item to drop: the oldest droppable one (of the largest group, with ``group``)."""
        oldest: dict[Hashable, int] = {}
        counts: Counter[Hashable] = Counter()
        for n, queued in enumerate(self._items):
            if self.droppable(queued):
                if self.group is None:
                    return n
                key = self.group(queued)
                oldest.setdefault(key, n)
                counts[key] += 1
        if not counts:
            return None
        return oldest[max(counts, key=lambda k: (counts[k], -oldest[k]))]

    def _drop_one(self) -> bool:
        n = self._victim()
        if n is None:
            return False
        queued = self._items[n]
        del self._items[n]
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop(queued)
        return True

    def get(self, timeout: float | None = None) -> T:
        """Next item. Raises ``Closed`` at the end, the producer's error if it failed, and
        ``TimeoutError`` if nothing came within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    if self._error is not None:
                        raise self._error
                    raise Closed(self.name)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(self.name)
                self._cond.wait(left)
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        """Close the channel so that the consumer raises ``error`` after the queued items."""
        with self._cond:
            if self._error is None:
                self._error = error
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                yield self.get()
            except Closed:
                return


def micro_batches(channel: Channel, *, size: int, max_wait_s: float, is_item=lambda x: True) -> Iterator[list]:
    """Group items from ``channel`` into lists of up to ``size``, waiting at most ``max_wait_s`` after
    the first item of a batch for the rest. Items for which ``is_item`` is False (markers such as
    end-of-source) end the current batch and come out alone, as a one-element list, in order."""
    if size < 1 or max_wait_s < 0:
        raise ConfigError(f"batch size must be >= 1 and max wait >= 0, got {size}, {max_wait_s}")
    batch: list = []
    deadline = 0.0
    while True:
        try:
            # Past the deadline this still takes what is already queued, without waiting.
            item = channel.get(timeout=max(deadline - time.monotonic(), 0.0)) if batch else channel.get()
        except TimeoutError:
            yield batch
            batch = []
            continue
        except Closed:
            if batch:
                yield batch
            return
        except BaseException:
            if batch:
                yield batch
            raise
        if not is_item(item):
            if batch:
                yield batch
                batch = []
            yield [item]
            continue
        if not batch:
            deadline = time.monotonic() + max_wait_s
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []

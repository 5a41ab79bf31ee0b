"""The pieces between the decoder and the sinks: queues with backpressure or drop-oldest, micro-batches,
smoothing, top-k and events."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from avfuse.stream.errors import ConfigError, MediaError
from avfuse.stream.infer.events import EventConfig, EventTracker
from avfuse.stream.infer.postprocess import PostprocessConfig, Smoother, parse_smoothing, top_k
from avfuse.stream.media.live import LiveConfig
from avfuse.stream.run.batching import Channel, Closed, micro_batches
from avfuse.stream.run.pipeline import PipelineConfig


def test_block_policy_makes_the_producer_wait_and_loses_nothing():
    ch = Channel(2, name="t")
    got = []

    def consume():
        time.sleep(0.2)
        got.extend(ch)

    t = threading.Thread(target=consume)
    t0 = time.monotonic()  # before the consumer starts its 0.2 s nap, however late the thread is scheduled
    t.start()
    for i in range(6):
        assert ch.put(i)
    waited = time.monotonic() - t0
    ch.close()
    t.join(5)
    assert got == list(range(6)) and ch.dropped == 0
    assert waited >= 0.19  # the third put had to wait for the slow consumer


def test_drop_oldest_keeps_the_newest_and_counts_drops():
    ch = Channel(3, policy="drop_oldest")
    for i in range(10):
        assert ch.put(i, timeout=0.1)
    ch.close()
    assert list(ch) == [7, 8, 9]
    assert ch.dropped == 7


def test_drop_oldest_never_drops_what_is_not_droppable():
    ch = Channel(2, policy="drop_oldest", droppable=lambda x: isinstance(x, int))
    ch.put("start")
    ch.put(1)
    ch.put(2)  # drops 1, keeps the marker
    assert ch.put("end", timeout=0.1) is False  # a marker is never dropped for: the producer waits
    ch.close()
    assert list(ch) == ["start", 2] and ch.dropped == 1


def test_a_failed_producer_reaches_the_consumer_after_the_queued_items():
    ch = Channel(4)
    ch.put("a")
    ch.fail(MediaError("decoder broke"))
    assert ch.get() == "a"
    with pytest.raises(MediaError, match="decoder broke"):
        ch.get()
    assert ch.put("late") is False


def test_get_times_out_rather_than_hanging():
    ch = Channel(1)
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.05)
    ch.close()
    with pytest.raises(Closed):
        ch.get()


def test_micro_batches_fill_up_to_the_size_when_items_are_waiting():
    ch = Channel(100)
    for i in range(10):
        ch.put(i)
    ch.close()
    assert list(micro_batches(ch, size=4, max_wait_s=10)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_micro_batches_do_not_wait_longer_than_max_wait():
    ch = Channel(100)
    out = []
    second_put = []

    def produce():
        ch.put(1)
        time.sleep(1.0)
        second_put.append(time.monotonic())
        ch.put(2)
        ch.close()

    threading.Thread(target=produce).start()
    for b in micro_batches(ch, size=8, max_wait_s=0.05):
        out.append((b, time.monotonic()))
    # The first batch left alone after ~50 ms of waiting, before the second item came 1 s later.
    assert [b for b, _ in out] == [[1], [2]]
    assert out[0][1] < second_put[0]


def test_markers_end_a_batch_and_come_out_alone_in_order():
    ch = Channel(100)
    for x in [1, 2, "end-a", 3, "end-b"]:
        ch.put(x)
    ch.close()
    batches = list(micro_batches(ch, size=8, max_wait_s=1, is_item=lambda x: isinstance(x, int)))
    assert batches == [[1, 2], ["end-a"], [3], ["end-b"]]


def test_smoothing_mean_and_ema():
    rows = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    mean = Smoother(PostprocessConfig(smoothing="mean", window=2))
    assert [m.tolist() for m in map(mean, rows)] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    ema = Smoother(PostprocessConfig(smoothing="ema", alpha=0.5))
    assert [e.tolist() for e in map(ema, rows)] == [[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]
    assert parse_smoothing("mean:5") == {"smoothing": "mean", "window": 5}
    assert parse_smoothing("ema:0.3") == {"smoothing": "ema", "alpha": 0.3}
    with pytest.raises(ConfigError, match="median"):
        parse_smoothing("median:3")
    with pytest.raises(ConfigError, match="alpha"):
        PostprocessConfig(smoothing="ema", alpha=1.5)


def test_top_k_is_best_first():
    assert top_k(np.array([0.1, 0.7, 0.2]), ("a", "b", "c"), 2) == [("b", 0.7), ("c", 0.2)]


def _rec(label, score, start, end=None):
    return {"source": "s", "label": label, "score": score, "start": start, "end": start + 1 if end is None else end}


def test_events_merge_runs_and_respect_threshold_and_min_duration():
    tr = EventTracker(EventConfig(threshold=0.5, min_duration_s=2.0))
    out = []
    for rec in [_rec("a", 0.9, 0), _rec("a", 0.7, 1), _rec("a", 0.8, 2), _rec("b", 0.9, 3), _rec("b", 0.3, 4),
                _rec("b", 0.9, 5), _rec("b", 0.9, 6)]:
        out += tr.update(rec)
    out += tr.finish()
    assert [(e["label"], e["start"], e["end"], e["score"]) for e in out] == [("a", 0, 3, 0.8), ("b", 5, 7, 0.9)]
    # The lone "b" at 3..4 was shorter than 2 s; the one at 4..5 was under the threshold and broke the run.


def test_events_span_overlapping_windows_and_break_on_gaps():
    tr = EventTracker(EventConfig())
    out = []
    for rec in [_rec("a", 1, 0, 2), _rec("a", 1, 1, 3), _rec("a", 1, 2, 4), _rec("a", 1, 10, 12)]:
        out += tr.update(rec)
    out += tr.finish()
    assert [(e["start"], e["end"]) for e in out] == [(0, 4), (10, 12)]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("batch", 0, "batch and queue size"), ("queue_size", 0, "batch and queue size"),
    ("max_wait_ms", -1.0, "max wait"),
])
def test_pipeline_config_names_the_bad_value(field, value, message):
    with pytest.raises(ConfigError, match=message):
        PipelineConfig(**{field: value})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("transport", "http", "live transport"), ("timeout_s", 0.0, "live timeout"), ("timeout_s", 601.0, "live timeout"),
    ("attempts", -1, "live attempts"),
])
def test_live_config_names_the_bad_value(field, value, message):
    with pytest.raises(ConfigError, match=message):
        LiveConfig(**{field: value})


def _batches_of_two_items_apart(wait_s: float, apart_s: float = 0.4) -> list[tuple[list, float]]:
    """Batches (with the seconds from the first put to each batch) of two items put ``apart_s`` apart."""
    ch = Channel(8, name="t")
    t0 = time.monotonic()

    def produce():
        ch.put(1)
        time.sleep(apart_s)
        ch.put(2)
        ch.close()

    threading.Thread(target=produce).start()
    return [(b, time.monotonic() - t0) for b in micro_batches(ch, size=8, max_wait_s=wait_s)]


def test_a_run_with_live_sources_does_not_wait_to_fill_a_batch_unless_told():
    live = _batches_of_two_items_apart(PipelineConfig().batch_wait_s(live=True))
    assert [b for b, _ in live] == [[1], [2]]
    assert live[0][1] < 0.3  # the first segment went on before the second came
    told = _batches_of_two_items_apart(PipelineConfig(max_wait_ms=1000).batch_wait_s(live=True))
    assert [b for b, _ in told] == [[1, 2]]  # with --max-wait-ms the run waits for a fuller batch


def test_greedy_batches_still_take_everything_already_queued():
    ch = Channel(16)
    for i in range(11):
        ch.put(i)
    ch.close()
    assert list(micro_batches(ch, size=4, max_wait_s=0.0)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]

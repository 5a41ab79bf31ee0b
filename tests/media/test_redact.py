"""Credentials in source URLs never reach what a user sees."""

from __future__ import annotations

import logging
import random

import pytest

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.live import Gap, is_live
from avfuse.stream.media.reconnect import Backoff
from avfuse.stream.media.redact import RedactFilter, credentials, redact, redact_text, scrub, secrets_of
from avfuse.stream.run.sources import Source, output_stems

FORMS = [  # (url, as shown, the secrets it holds)
    ("rtsp://user:pass@host/path", "rtsp://***@host/path", ["user:pass"]),
    ("rtsp://admin:p%40ss:w0rd@10.0.0.5:554/Streaming/Channels/101",
     "rtsp://***@10.0.0.5:554/Streaming/Channels/101", ["p%40ss:w0rd", "p@ss:w0rd"]),
    ("rtsp://onlyuser@cam.local/live", "rtsp://***@cam.local/live", ["onlyuser"]),
    ("rtsps://u:p@[::1]:322/x", "rtsps://***@[::1]:322/x", ["u:p"]),
    ("rtsp://admin:S3cr3tPW@127.0.0.1:47001", "rtsp://***@127.0.0.1:47001", ["S3cr3tPW"]),
    ("rtsp://admin:S3cr3tPW@127.0.0.1:47001/", "rtsp://***@127.0.0.1:47001/", ["S3cr3tPW"]),
    ("tcp://admin:S3cr3tPW@127.0.0.1:9000", "tcp://***@127.0.0.1:9000", ["S3cr3tPW"]),
    ("udp://admin:S3cr3tPW@239.0.0.1:1234", "udp://***@239.0.0.1:1234", ["S3cr3tPW"]),
    ("rtsp://admin:pa/ss@cam/live", "rtsp://***@cam/live", ["pa/ss"]),
    ("rtsp://admin:pa#ss@cam/live", "rtsp://***@cam/live", ["pa#ss"]),
    ("rtsp://admin:pa?ss@cam/live", "rtsp://***@cam/live", ["pa?ss"]),
    ("rtsp://admin:p@ss@cam:554", "rtsp://***@cam:554", ["p@ss"]),
    ("rtsp://admin:a/b?c#d@cam", "rtsp://***@cam", ["a/b?c#d"]),
    ("https://example.com/live.m3u8?token=abc123&quality=hd", "https://example.com/live.m3u8?token=***&quality=hd",
     ["abc123"]),
    ("http://admin:pw9@host/clip.mp4?token=T0K", "http://***@host/clip.mp4?token=***", ["pw9", "T0K"]),
    ("srt://host:9000?mode=caller&passphrase=hunter22", "srt://host:9000?mode=caller&passphrase=***", ["hunter22"]),
    ("rtsp://cam/live?pw=Hunter22", "rtsp://cam/live?pw=***", ["Hunter22"]),
    ("rtsp://cam/live?channel=1;password=Hunter22", "rtsp://cam/live?channel=1;password=***", ["Hunter22"]),
    ("rtsp://cam/live;user=bob;password=Hunter22", "rtsp://cam/live;user=***;password=***", ["bob", "Hunter22"]),
    ("https://cdn/x.m3u8?a=1?api_key=K3Y", "https://cdn/x.m3u8?a=1?api_key=***", ["K3Y"]),
    ("https://cdn/x.m3u8#access_token=JWT.x/y", "https://cdn/x.m3u8#access_token=***", ["JWT.x/y"]),
    ("https://cdn/x?sig=a%2Fb+c", "https://cdn/x?sig=***", ["a%2Fb+c", "a/b c"]),
    ("rtsp://host/path", "rtsp://host/path", []),
    ("videos/clip.mp4", "videos/clip.mp4", []),
    ("/data/user:pass@weird/name.mp4", "/data/user:pass@weird/name.mp4", []),
]


@pytest.mark.parametrize("url, shown, secrets", FORMS)
def test_every_url_form_is_shown_without_its_secrets_wherever_it_goes(url, shown, secrets):
    assert redact(url) == shown
    assert redact_text(f"cannot open '{url}': 401") == f"cannot open '{shown}': 401"
    (stem,) = output_stems([Source(name=url)]).values()
    leaked = f"{scrub(f'{url} failed (password {secrets})', url)} {stem}"
    assert not [s for s in secrets if s in leaked]
    assert all(s in secrets_of(url) for s in secrets if s in url)


@pytest.mark.parametrize("url, bare, user, password", [
    ("http://alice:pa/ss#w?rd@127.0.0.1:8080/hook?x=1", "http://127.0.0.1:8080/hook?x=1", "alice", "pa/ss#w?rd"),
    ("mqtt://bob:p%40ss%3Aword@h/t", "mqtt://h/t", "bob", "p@ss:word"),
    ("https://token@h/hook", "https://h/hook", "token", None),
    ("https://h/hook", "https://h/hook", None, None),
])
def test_credentials_split_a_url_by_the_rule_redact_uses(url, bare, user, password):
    assert credentials(url) == (bare, user, password)


def test_scrub_removes_the_password_wherever_it_appears():
    url = "rtsp://alice:s3cr%21t@cam:554/live"
    text = f"Server returned 401 Unauthorized: '{url}' (user alice, password s3cr!t, raw s3cr%21t)"
    out = scrub(text, url)
    assert "s3cr" not in out
    assert "rtsp://***@cam:554/live" in out


def test_gap_record_has_the_documented_fields():
    gap = Gap(source=redact("rtsp://a:b@h/p"), start_wallclock=10.0, end_wallclock=12.5, reason="stalled")
    assert gap.as_record() == {"type": "gap", "source": "rtsp://***@h/p", "start_wallclock": 10.0,
                               "end_wallclock": 12.5, "reason": "stalled"}
    assert gap.duration == 2.5


@pytest.mark.parametrize("source, live", [
    ("rtsp://cam/live", True), ("RTSPS://cam/live", True), ("rtmp://x/app/key", True), ("srt://h:1", True),
    ("udp://239.0.0.1:1234", True), ("https://cdn/x/index.m3u8", True), ("https://cdn/x/video.mp4", False),
    ("clip.mp4", False), ("/tmp/rtsp.mp4", False),
])
def test_is_live(source, live):
    assert is_live(source) is live


def test_backoff_grows_exponentially_to_the_cap_with_jitter_below_the_base():
    b = Backoff(initial=0.5, factor=2.0, cap=4.0, jitter=0.5)
    rng = random.Random(1)
    delays = [[b.delay(n, rng) for _ in range(200)] for n in range(1, 7)]
    bases = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for ds, base in zip(delays, bases, strict=True):
        assert all(base * 0.5 <= d <= base for d in ds)
        assert max(ds) - min(ds) > base * 0.3  # really jittered, not a constant
    assert Backoff(jitter=0.0).delay(3) == 2.0


def test_backoff_rejects_bad_settings():
    with pytest.raises(ConfigError, match="factor"):
        Backoff(factor=0.5)
    with pytest.raises(ConfigError, match="cap"):
        Backoff(initial=5.0, cap=1.0)


def test_redact_text_masks_urls_inside_free_text():
    text = ("[rtsp @ 0x55] cannot open 'rtsp://admin:hunter2@10.0.0.9:554/h264' and "
            "https://cdn/x.m3u8?quality=hd&api_key=K3Y; plain words: user:pass stay")
    out = redact_text(text)
    assert "hunter2" not in out and "K3Y" not in out
    assert "'rtsp://***@10.0.0.9:554/h264'" in out and "quality=hd&api_key=***" in out
    assert out.endswith("plain words: user:pass stay")


def test_redact_filter_cleans_log_records_from_any_logger(caplog):
    caplog.set_level(logging.INFO)
    handler = caplog.handler
    handler.addFilter(RedactFilter())
    try:
        logging.getLogger("somelib").warning("retrying %s (%d)", "rtsp://u:Pa55@cam/live", 3)
    finally:
        handler.removeFilter(handler.filters[-1])
    assert caplog.records[-1].getMessage() == "retrying rtsp://***@cam/live (3)"
    assert "Pa55" not in caplog.text

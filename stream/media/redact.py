"""Keep credentials out of everything a user sees: logs, records, file names, metric labels, errors.

``redact(url)`` is the one way a source name is shown. ``rtsp://user:pass@host/path`` becomes
``rtsp://***@host/path``; values of query, fragment and ``;`` path parameters whose key looks like a
secret (``?token=...``, ``?pw=...``, ``;password=...``) become ``***``. Everything else is kept as written.

The user info runs from ``://`` to the *last* ``@``: a password may hold an unencoded ``/``, ``?`` or
``#`` (``rtsp://admin:pa/ss@cam``), which a standard URL parser would read as the start of the path,
leaving the password on show. A URL with an ``@`` in its path or query is therefore shown with more
hidden than needed, never less. :func:`credentials` splits a URL by the same rule to log in with it.

``scrub(text, url)`` removes a URL's secrets from any text (FFmpeg error strings quote the URL whole);
``redact_text`` masks every URL in a text whose URLs are not known.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote, unquote, unquote_plus

MASK = "***"
SECRET_KEYS = re.compile(r"pass|pw|token|secret|key|auth|sig|credential|session|user", re.IGNORECASE)
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_PARAM_KEY = re.compile(r"[?&;#]([^=&;?#/\s'\"<>]*)=")  # the key of a query, fragment or ;path parameter
_VALUE_END = re.compile(r"[&;#\s'\"<>]")


def _userinfo(text: str, start: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """The span of the user info of the URL at ``text[start:end]`` (scheme://USERINFO@...), if any."""
    m = _SCHEME.match(text, start)
    if m is None:
        return None
    at = text.rfind("@", m.end(), len(text) if end is None else end)
    return (m.end(), at) if at > m.end() else None


def _params(text: str) -> list[tuple[int, int]]:
    """Spans of the values of secret-looking parameters anywhere in ``text``."""
    spans = []
    for m in _PARAM_KEY.finditer(text):
        if SECRET_KEYS.search(m.group(1)):
            end = _VALUE_END.search(text, m.end())
            spans.append((m.end(), end.start() if end else len(text)))
    return [s for s in spans if s[1] > s[0]]


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in sorted(spans):
        if end <= last:
            continue
        out += [text[last:max(start, last)], MASK]
        last = end
    return "".join(out) + text[last:]


def _spans(url: str) -> list[tuple[int, int]]:
    if not _SCHEME.match(url):
        return []
    user = _userinfo(url)
    return ([user] if user else []) + _params(url)


def redact(source: str | object) -> str:
    """The source as it may be shown: user info and secret parameter values replaced by ``***``.

    File paths and URLs without secrets come back unchanged.
    """
    text = str(source)
    return _mask(text, _spans(text))


def credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user info, and the user and password it held (percent-decoded), by the rule
    :func:`redact` uses: ``http://u:p/w@host/x`` is ``("http://host/x", "u", "p/w")``."""
    span = _userinfo(url)
    if span is None:
        return url, None, None
    user, sep, password = url[span[0]:span[1]].partition(":")
    return url[:span[0]] + url[span[1] + 1:], unquote(user), unquote(password) if sep else None


def secrets_of(url: str) -> list[str]:
    """The secret strings inside ``url`` (user info, password, secret parameter values), as written,
    decoded and encoded; longest first, so a password inside the whole user info is not half-replaced."""
    found = [url[a:b] for a, b in _spans(url)]
    user = _userinfo(url)
    found += [url[user[0]:user[1]].partition(":")[2]] if user else []
    found += [unquote(s) for s in found] + [unquote_plus(s) for s in found]
    found += [quote(s, safe="") for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` shown redacted and every secret of ``url`` replaced by ``***``."""
    if not url:
        return text
    text = text.replace(url, redact(url))
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return text


def redact_text(text: str) -> str:
    """Any text with the user info of every URL in it, and secret-looking parameter values, masked. For
    messages whose URL is not known (a third-party log line); :func:`scrub` is exact when it is."""
    spans = [s for m in _URL_IN_TEXT.finditer(text) if (s := _userinfo(text, m.start(), m.end()))]
    return _mask(text, spans + _params(text))


class RedactFilter(logging.Filter):
    """A logging filter (put it on a handler) that passes every record through :func:`redact_text`:
    defence in depth for log lines, from any library, that quote a URL with credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

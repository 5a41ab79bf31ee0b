"""Keep credentials out of everything a user sees: logs, records, metric labels, error messages.

``redact(url)`` is the one way a source name is shown. ``rtsp://user:pass@host/path`` becomes
``rtsp://***@host/path``; query values whose key looks like a secret (``?token=...``) become ``***``.
``scrub(text, url)`` removes a URL's secrets from any text (FFmpeg error strings quote the URL whole).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

MASK = "***"
SECRET_KEYS = re.compile(r"pass|pwd|token|secret|key|auth|sig|credential", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_USERINFO_IN_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@'\"<>]+@")
_SECRET_PARAM_IN_TEXT = re.compile(r"([?&][^=&\s'\"]*(?:pass|pwd|token|secret|key|auth|sig|credential)[^=&\s'\"]*=)"
                                   r"[^&\s'\"]+", re.IGNORECASE)


def redact(source: str | object) -> str:
    """The source as it may be shown: user info and secret query values replaced by ``***``.

    File paths and URLs without secrets come back unchanged.
    """
    text = str(source)
    if not _SCHEME.match(text):
        return text
    try:
        parts = urlsplit(text)
    except ValueError:  # malformed URL (e.g. a bad IPv6 literal): hide everything between :// and @
        return re.sub(r"(://)[^/@]*@", r"\1" + MASK + "@", text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_KEYS.search(k) for k, _ in pairs):
            query = "&".join(f"{quote(k, safe='')}={MASK if SECRET_KEYS.search(k) else quote(v, safe='')}"
                             for k, v in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str) -> list[str]:
    """The secret strings inside ``url`` (password, user info, secret query values), raw and decoded."""
    if not _SCHEME.match(url):
        return []
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        m = re.search(r"://([^/@]*)@", url)
        return [m.group(1)] if m and m.group(1) else []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found.append(userinfo)
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_KEYS.search(k) and v:
            found.append(v)
    found += [unquote(s) for s in found]
    found += [quote(s, safe="") for s in found]
    # longest first, so a password inside the whole user info is not half-replaced
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
    """Any text with the user info of every URL in it, and secret-looking query values, masked. For
    messages whose URL is not known (a third-party log line); :func:`scrub` is exact when it is."""
    return _SECRET_PARAM_IN_TEXT.sub(r"\1" + MASK, _USERINFO_IN_TEXT.sub(r"\1" + MASK + "@", text))


class RedactFilter(logging.Filter):
    """A logging filter (put it on a handler) that passes every record through :func:`redact_text`:
    defence in depth for log lines, from any library, that quote a URL with credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True

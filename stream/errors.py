"""One error hierarchy for avfuse. Each class is also the built-in it resembles, so callers
can catch either (``except MediaError`` or ``except ValueError``)."""

from __future__ import annotations


class AvfuseError(Exception):
    """Base of every error avfuse raises on purpose."""


class ConfigError(AvfuseError, ValueError):
    """A configuration value is out of range or inconsistent."""


class SourceError(AvfuseError, OSError):
    """A source cannot be opened: missing file, empty file, unreachable URL."""


class MediaError(AvfuseError, ValueError):
    """A source was opened but its content is not decodable media."""


class CodecError(MediaError):
    """The source uses a codec FFmpeg cannot decode."""


class CaptionError(MediaError):
    """A caption file or stream cannot be parsed."""


class ModelError(AvfuseError, ValueError):
    """A model file or checkpoint is missing, malformed or does not match."""


class DataError(AvfuseError, ValueError):
    """A training manifest or data set is unusable."""


class DependencyError(AvfuseError, ImportError):
    """An optional dependency (an extra) is not installed."""


class SinkError(AvfuseError, OSError):
    """A sink refuses the run: a broker or endpoint that rejects the connection (bad credentials, not
    authorised). Unlike a sink that is only unreachable, retrying will not help."""


class OutputError(AvfuseError, OSError):
    """An output (a file in OUT, a marker, the summary, stdout) cannot be written: disk full, name too
    long, read-only, broken pipe, or the output folder is in use by another run."""

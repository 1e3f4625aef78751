"""Logging for a daemon: per-module loggers, a plain format for journald, timestamps elsewhere.

Under systemd (``$JOURNAL_STREAM`` names our stderr), lines carry the
sd-daemon(3) priority prefix (``<3>`` error ... ``<7>`` debug) instead of a
timestamp and level, which journald adds itself; every line of a multi-line
record (a traceback) gets the prefix so it keeps its priority. Elsewhere (the
bench, a terminal) lines read ``2024-05-01 12:00:00,123 INFO dmclient.cache: ...``.

Modules log with ``log = logging.getLogger(__name__)`` and lazy ``%s``
arguments; this only configures the root handler.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message``, the prefix repeated on every line of the record."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def _priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def writes_to_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True if ``$JOURNAL_STREAM`` names this stream's file (the check systemd.exec(5) recommends)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM")
    if not value:
        return False
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


def setup_logging(level: str, *, stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> None:
    """Configure the root logger for a daemon (``level``: debug, info, warning or error)."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if writes_to_journal(out, env) else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """Change the level at run time (a SIGHUP reload)."""
    logging.getLogger().setLevel(level.upper())

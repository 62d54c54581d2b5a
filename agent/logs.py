"""Logging set-up: journald priorities under systemd, timestamps on a terminal."""

from __future__ import annotations

import collections
import logging
import os
import sys
import unicodedata

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


# Controls (C0, DEL, C1), invisible format characters that reorder or hide text (bidi overrides,
# zero-width joiners), line and paragraph separators, lone surrogates: none belongs in a log line
# or on a screen, and a raw ESC in a scan would otherwise reach a terminal or a journal reader.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def printable(text: str) -> str:
    """`text` with control and invisible characters written as Python escapes (`\\x1b`,
    `\\u202e`): safe for a log line, a terminal and a screen's `display`, and still readable."""
    if text.isprintable():
        return text
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in _HIDDEN else c for c in text)


class PrintableFormatter(logging.Formatter):
    """Escapes what a log message interpolated (a scan, a topic, a provider's words) so no input
    can forge a log line or drive the terminal; tracebacks keep their own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


class JournalFormatter(PrintableFormatter):
    """`<N>` prefixes let journald file each line under its priority (SyslogLevelPrefix=yes)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


# How many of the agent's own latest log lines a support bundle carries (about 200 KB at most).
RECENT_LINES = 2000


class RecentLog(logging.Handler):
    """The agent's latest log lines, in memory, for the fleet's support bundle: under the unit's
    sandbox (DynamicUser, ProtectKernelLogs) the agent cannot read the journal or dmesg, but it
    always has what it logged itself."""

    def __init__(self, lines: int = RECENT_LINES) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.setFormatter(PrintableFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never cost the caller
            self.handleError(record)

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


RECENT = RecentLog()


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            PrintableFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler, RECENT]
    root.setLevel(level.upper())
    # paho logs connection chatter at INFO; the bus reports what matters itself.
    logging.getLogger("aiomqtt").setLevel(logging.WARNING)
    # httpx logs every request URL at INFO, query strings included (Punchh looks guests up by
    # phone or email in the query): provider adapters log what matters, masked.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

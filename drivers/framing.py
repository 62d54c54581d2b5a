"""Cutting a serial scanner's byte stream into scans, whatever chunks the port delivers.

A serial line has no message boundaries: a read may return half a scan or three of them, so the
framer keeps the unfinished tail between reads and only ever holds one bounded frame. It knows
terminators only; the AIM prefix and GS1 separators (GS, 0x1D) stay in the scan for the
normaliser.

Empty frames (two terminators in a row) are no scan and no error: a scanner set to a double
suffix (CR CR, or CR LF read as `ANY_EOL`) sends one after every scan.
"""

from __future__ import annotations

import enum
import re

STX = 0x02
ETX = 0x03


class Framing(enum.StrEnum):
    """How scans are delimited; the value is what the config file says."""

    CR = "cr"
    LF = "lf"
    CRLF = "crlf"
    STX_ETX = "stx_etx"
    ANY_EOL = "any_eol"


_EOL = {
    Framing.CR: re.compile(rb"\r"),
    Framing.LF: re.compile(rb"\n"),
    Framing.CRLF: re.compile(rb"\r\n"),
    Framing.ANY_EOL: re.compile(rb"\r|\n"),
}
_STX_OR_ETX = re.compile(rb"[\x02\x03]")


class Framer:
    """Feed it bytes as they arrive; get back the complete scans, terminators removed.

    `discarded` counts bytes outside STX…ETX frames (and a frame cut short by a new STX),
    `overruns` counts frames longer than `max_length`, which are dropped whole: the framer never
    holds more than `max_length` + 1 bytes between calls.
    """

    def __init__(self, framing: Framing, *, max_length: int = 4096) -> None:
        self.framing = framing
        self.max_length = max_length
        self.discarded = 0
        self.overruns = 0
        self._buf = bytearray()
        self._in_frame = False  # STX_ETX only: an STX has been seen and no ETX yet
        self._skipping = False  # inside a frame already counted as an overrun

    def feed(self, data: bytes) -> list[bytes]:
        if self.framing is Framing.STX_ETX:
            return self._feed_stx_etx(data)
        return self._feed_eol(data, _EOL[self.framing])

    def pending(self) -> bytes:
        """The unfinished frame held for the next read (an overrun's tail is not held)."""
        return bytes(self._buf) if not self._skipping else b""

    def flush(self) -> bytes | None:
        """End of stream: the unfinished frame, if any, and a fresh start for the next one."""
        partial = self.pending()
        self._buf.clear()
        self._in_frame = self._skipping = False
        return partial or None

    def _feed_eol(self, data: bytes, eol: re.Pattern[bytes]) -> list[bytes]:
        buf = bytes(self._buf) + data
        scans: list[bytes] = []
        start = 0
        for match in eol.finditer(buf):
            frame = buf[start : match.start()]
            start = match.end()
            if self._skipping:
                self._skipping = False
            elif len(frame) > self.max_length:
                self.overruns += 1
            elif frame:
                scans.append(frame)
        tail = buf[start:]
        # Under CRLF a trailing CR may be the first half of the terminator: not frame content yet.
        half_terminator = self.framing is Framing.CRLF and tail.endswith(b"\r")
        if len(tail) - half_terminator > self.max_length and not self._skipping:
            self.overruns += 1
            self._skipping = True
        if self._skipping:
            tail = b"\r" if half_terminator else b""
        self._buf[:] = tail
        return scans

    def _feed_stx_etx(self, data: bytes) -> list[bytes]:
        scans: list[bytes] = []
        pos = 0
        while pos < len(data):
            if not self._in_frame:
                stx = data.find(STX, pos)
                if stx < 0:
                    self.discarded += len(data) - pos
                    break
                self.discarded += stx - pos
                self._start_frame()
                pos = stx + 1
                continue
            match = _STX_OR_ETX.search(data, pos)
            end = match.start() if match else len(data)
            if not self._skipping:
                self._buf += data[pos:end]
                if len(self._buf) > self.max_length:
                    self.overruns += 1
                    self._skipping = True
                    self._buf.clear()
            if match is None:
                break
            if data[end] == ETX:
                if not self._skipping and self._buf:
                    scans.append(bytes(self._buf))
                self._in_frame = False
                self._buf.clear()
            else:
                # A new STX before the ETX: the frame was cut short; count it and its STX.
                if not self._skipping:
                    self.discarded += len(self._buf) + 1
                self._start_frame()
            pos = end + 1
        return scans

    def _start_frame(self) -> None:
        self._in_frame = True
        self._skipping = False
        self._buf.clear()

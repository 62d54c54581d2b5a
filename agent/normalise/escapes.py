"""Backslash escapes for raw scans written as text lines (brief §5): `lane-agent parse`, the FIFO
and replay drivers.

`\\r`, `\\n`, `\\t`, `\\\\` and `\\xHH` (any byte, so `\\x1d` is GS and `\\xff` an invalid UTF-8
byte); any other backslash sequence is kept literally, so a typo never loses a character.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|([rnt\\]))")
_SIMPLE = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}
_SIMPLE_REVERSE = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}


def _encode(text: str) -> bytes:
    # A line read with errors="surrogateescape" (stdin under a C locale) carries undecodable
    # bytes as lone surrogates: give those bytes back. Other lone surrogates cannot be UTF-8 at
    # all; encode them as-is so that framing reports the invalid UTF-8 instead of crashing here.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def unescape(line: str) -> bytes:
    """Decode one escaped line (without its line terminator) into the raw scan bytes."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(line):
        out += _encode(line[pos : m.start()])
        out += bytes((int(m[1], 16),)) if m[1] else _SIMPLE[m[2]]
        pos = m.end()
    out += _encode(line[pos:])
    return bytes(out)


def escape(data: bytes) -> str:
    """The inverse of `unescape`: one printable line for any bytes (to record or show a raw scan).

    Valid UTF-8 text stays readable; control characters and invalid bytes become `\\xHH`.
    """
    parts = []
    for char in data.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char in _SIMPLE_REVERSE:
            parts.append(_SIMPLE_REVERSE[char])
        elif code < 0x20 or code == 0x7F:
            parts.append(f"\\x{code:02x}")
        elif 0x80 <= code <= 0x9F or code in (0x2028, 0x2029) or 0xDC80 <= code <= 0xDCFF:
            # C1 controls and Unicode line breaks as their UTF-8 bytes (`str.splitlines` would cut
            # the line there); an undecodable byte, held as a lone surrogate, as itself.
            raw = char.encode("utf-8", "surrogateescape")
            parts.append("".join(f"\\x{b:02x}" for b in raw))
        else:
            parts.append(char)
    return "".join(parts)

"""The serial framer: terminators, STX/ETX, overruns, and independence from how reads split."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.framing import Framer, Framing

GS = b"\x1d"


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    return [scan for chunk in chunks for scan in framer.feed(chunk)]


@pytest.mark.parametrize(
    ("framing", "stream", "scans", "pending"),
    [
        (Framing.CR, b"123\r456\r78", [b"123", b"456"], b"78"),
        (Framing.LF, b"123\n456\r\n", [b"123", b"456\r"], b""),
        (Framing.CRLF, b"123\r\n4\r5\n6\r\n7\r", [b"123", b"4\r5\n6"], b"7\r"),
        (Framing.ANY_EOL, b"1\r2\n3\r\n4\n\r5\r\r", [b"1", b"2", b"3", b"4", b"5"], b""),
        (Framing.STX_ETX, b"\x02123\x03\r\n\x02456\x03\x0278", [b"123", b"456"], b"78"),
        (
            Framing.ANY_EOL,
            b"]C1010501234567890010ABC" + GS + b"21XYZ\r\n",
            [b"]C1010501234567890010ABC" + GS + b"21XYZ"],
            b"",
        ),
    ],
)
def test_frames(framing: Framing, stream: bytes, scans: list[bytes], pending: bytes) -> None:
    framer = Framer(framing)
    assert framer.feed(stream) == scans
    assert framer.pending() == pending


def test_crlf_split_between_cr_and_lf() -> None:
    framer = Framer(Framing.CRLF)
    assert framer.feed(b"123\r") == []
    assert framer.feed(b"\n") == [b"123"]


def test_any_eol_crlf_across_reads_gives_no_empty_scan() -> None:
    framer = Framer(Framing.ANY_EOL)
    assert framer.feed(b"123\r") == [b"123"]
    assert framer.feed(b"\n456\r") == [b"456"]


def test_stx_etx_counts_bytes_outside_frames() -> None:
    framer = Framer(Framing.STX_ETX)
    assert framer.feed(b"noise\x02123\x03\r\n") == [b"123"]
    assert framer.discarded == 7


def test_stx_etx_new_stx_cuts_the_unfinished_frame() -> None:
    framer = Framer(Framing.STX_ETX)
    assert framer.feed(b"\x0212\x02345\x03") == [b"345"]
    assert framer.discarded == 3  # the STX and the two bytes of the frame that never ended


@pytest.mark.parametrize("framing", [Framing.CR, Framing.CRLF, Framing.ANY_EOL])
def test_overlong_frame_is_dropped_whole(framing: Framing) -> None:
    eol = b"\r\n" if framing is Framing.CRLF else b"\r"
    framer = Framer(framing, max_length=5)
    assert framer.feed(b"12345") == []
    assert framer.feed(b"678") == []
    assert framer.overruns == 1
    assert framer.pending() == b""
    assert framer.feed(b"9" + eol + b"ok" + eol) == [b"ok"]
    assert framer.overruns == 1


def test_overlong_stx_etx_frame_is_dropped_whole() -> None:
    framer = Framer(Framing.STX_ETX, max_length=3)
    assert framer.feed(b"\x021234") == []
    assert framer.feed(b"56\x03\x02ok\x03") == [b"ok"]
    assert framer.overruns == 1
    assert framer.discarded == 0


def test_frame_of_exactly_max_length_passes() -> None:
    framer = Framer(Framing.CRLF, max_length=3)
    assert framer.feed(b"123\r") == []
    assert framer.feed(b"\n") == [b"123"]
    assert framer.overruns == 0


def test_flush_returns_the_unfinished_frame_once() -> None:
    framer = Framer(Framing.STX_ETX)
    framer.feed(b"\x02123")
    assert framer.flush() == b"123"
    assert framer.flush() is None
    assert framer.feed(b"456\x03") == []  # the frame's STX went with the flush
    assert framer.discarded == 4


def test_flush_after_an_overrun_returns_nothing() -> None:
    framer = Framer(Framing.LF, max_length=2)
    framer.feed(b"1234")
    assert framer.flush() is None


# Streams made of the bytes that matter to framing, plus ordinary ones.
stream_bytes = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"\x02", b"\x03", b"a", b"]C1", b"\x1d", b"0123"]),
    max_size=120,
).map(b"".join)


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    framing=st.sampled_from(Framing),
    max_length=st.integers(1, 12),
    data=st.data(),
)
def test_any_split_gives_the_same_scans(
    framing: Framing, max_length: int, data: st.DataObject
) -> None:
    stream = data.draw(stream_bytes)
    chunks = data.draw(split(stream))
    whole, pieces = Framer(framing, max_length=max_length), Framer(framing, max_length=max_length)
    expected = whole.feed(stream)
    got: list[bytes] = []
    for chunk in chunks:
        got += pieces.feed(chunk)
        assert len(pieces.pending()) <= max_length + 1
    assert got == expected
    assert (pieces.discarded, pieces.overruns) == (whole.discarded, whole.overruns)
    assert pieces.flush() == whole.flush()
    assert all(0 < len(scan) <= max_length for scan in expected)


@given(
    framing=st.sampled_from([Framing.CR, Framing.LF, Framing.CRLF, Framing.ANY_EOL]),
    stream=stream_bytes,
)
def test_eol_framing_matches_a_plain_split(framing: Framing, stream: bytes) -> None:
    eol = {Framing.CR: b"\r", Framing.LF: b"\n", Framing.CRLF: b"\r\n"}.get(framing, b"\r|\n")
    *frames, tail = re.split(eol, stream)
    framer = Framer(framing, max_length=8)
    assert framer.feed(stream) == [f for f in frames if 0 < len(f) <= 8]
    # Under CRLF a trailing CR may still become a terminator: it does not count towards the tail.
    held = len(tail) - (framing is Framing.CRLF and tail.endswith(b"\r"))
    assert framer.overruns == sum(len(f) > 8 for f in frames) + (held > 8)


@given(stream=stream_bytes)
def test_stx_etx_scans_are_what_lies_between_stx_and_etx(stream: bytes) -> None:
    framer = Framer(Framing.STX_ETX)
    expected = [m.group(1) for m in re.finditer(rb"\x02([^\x02\x03]+)\x03", stream)]
    assert framer.feed(stream) == expected

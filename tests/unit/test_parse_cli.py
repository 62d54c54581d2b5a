"""`lane-agent parse`: escaped lines in, one JSON object per line out (brief §5)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from agent.normalise import Normaliser, NormaliserSettings, run_parse, unescape

LINES = [
    "]C10109506000134352\\x1d10ABC\\r\\n\n",
    "1234 5678 9012\n",
    "\n",
    "ab\\x07\n",
    "Jane@Example.com\r\n",
    "caf\\xc3\\xa9 \\xff\n",
    "https://giftlocal.com/g/Tok-1",
]


def parse(
    lines: list[str], hint: str | None = None, normaliser: Normaliser | None = None
) -> tuple[list[dict[str, object]], int]:
    out = io.StringIO()
    invalid = run_parse(lines, out, normaliser or Normaliser(), hint)
    text = out.getvalue()
    assert text.endswith("\n") or not lines
    return [json.loads(line) for line in text.splitlines()], invalid


def test_one_json_object_per_line() -> None:
    objects, invalid = parse(LINES)
    assert objects == [
        {"kind": "gs1", "value": "(01)09506000134352(10)ABC", "symbology": "gs1-128",
         "valid": True, "error": None, "ais": {"01": "09506000134352", "10": "ABC"}},
        {"kind": "gift_voucher_code", "value": "123456789012", "symbology": "unknown",
         "valid": True, "error": None},
        {"kind": "unknown", "value": "", "symbology": "unknown", "valid": False,
         "error": "empty scan"},
        {"kind": "unknown", "value": "ab\x07", "symbology": "unknown", "valid": False,
         "error": "control character 0x07 at position 2"},
        {"kind": "email", "value": "jane@example.com", "symbology": "unknown", "valid": True,
         "error": None},
        {"kind": "unknown", "value": "café \ufffd", "symbology": "unknown", "valid": False,
         "error": "not valid UTF-8 at byte 6"},
        {"kind": "gift_voucher_token", "value": "Tok-1", "symbology": "unknown", "valid": True,
         "error": None},
    ]  # fmt: skip
    assert invalid == 3


def test_output_keeps_non_ascii_text_readable() -> None:
    out = io.StringIO()
    run_parse(["Müller\n"], out, Normaliser())
    assert '"value": "Müller"' in out.getvalue()


def test_symbology_hint_applies_to_lines_without_aim() -> None:
    objects, invalid = parse(["0109506000134352\\x1d10ABC\n", "]E04006381333931\n"], "gs1-128")
    assert [(o["kind"], o["symbology"]) for o in objects] == [
        ("gs1", "gs1-128"),
        ("product_gtin", "ean13"),
    ]
    assert invalid == 0


def test_uses_the_given_normaliser_settings() -> None:
    normaliser = Normaliser(NormaliserSettings(rules=["phone"]))
    objects, invalid = parse(["123456789012\n", "555-123-4567\n"], normaliser=normaliser)
    assert [o["kind"] for o in objects] == ["unknown", "phone"]
    assert invalid == 0


def test_no_lines_no_output() -> None:
    assert parse([]) == ([], 0)


@pytest.mark.parametrize(
    ("line", "raw"),
    [
        ("plain", b"plain"),
        ("\\r\\n\\t\\\\", b"\r\n\t\\"),
        ("a\\x1db\\x1D", b"a\x1db\x1d"),
        ("\\xff\\x00", b"\xff\x00"),
        ("\\q \\x1 \\xZZ \\X1d", b"\\q \\x1 \\xZZ \\X1d"),  # unknown escapes stay literal
        ("end\\", b"end\\"),
        ("\\\\x1d", b"\\x1d"),  # an escaped backslash, then plain text
        ("é\\t", "é\t".encode()),
        ("\udcff", b"\xff"),  # a byte read from stdin with errors="surrogateescape"
        ("\ud800", b"\xed\xa0\x80"),  # not UTF-8 at all: left for framing to reject
    ],
)
def test_unescape(line: str, raw: bytes) -> None:
    assert unescape(line) == raw


def test_lane_agent_parse_command() -> None:
    """The real command end to end: stdin and stdout of a child process."""
    result = subprocess.run(
        [sys.executable, "-m", "agent", "parse", "--symbology", "keyed"],
        input="1234-5678-9012\n\\x07\nMüller\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
        timeout=60,
    )
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["kind"], o["value"], o["symbology"], o["valid"]) for o in objects] == [
        ("gift_voucher_code", "123456789012", "keyed", True),
        ("unknown", "\x07", "keyed", False),
        ("unknown", "Müller", "keyed", True),
    ]

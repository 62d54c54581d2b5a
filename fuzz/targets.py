"""The fuzz harnesses: one function per target, called with each input's bytes.

A harness raises (an AssertionError naming the broken promise, or the code's own unexpected
exception) when the input breaks a property of its target; anything else it returns quietly. The
first byte or two of an input choose the target's options (settings, symbology hint, framing;
for requests, the first line is the op), the rest is what a device or a screen would send, so
the fuzzer explores both together. Inputs are
independent: every harness starts from the same state, so a saved crash replays on its own.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from agent.contract import OPS, HealthResult, Request, Response, ScanMessage
from agent.devices import DeviceRegistry
from agent.errors import ErrorCode
from agent.logs import printable
from agent.normalise import Normaliser, NormaliserSettings, Token, gs1
from agent.normalise.kinds import PUBLIC_KINDS, Kind
from agent.requests import FirstUse, RequestRouter, ResponseStore
from agent.scans import NFC_UID, ScanPipeline
from agent.tokens import MASK, TokenVault
from drivers.base import RawScan
from drivers.framing import ETX, STX, Framer, Framing
from drivers.hidpos_report import (
    REPORT_DESCRIPTOR,
    DecodedScan,
    MalformedReport,
    ReportAssembler,
    build_reports,
    is_barcode_scanner,
)

Harness = Callable[[bytes], None]


def _options(data: bytes, count: int = 1) -> tuple[bytes, bytes]:
    """The first `count` bytes (zeros when the input is shorter) and the rest."""
    return data[:count].ljust(count, b"\0"), data[count:]


# --- normaliser and scan pipeline ------------------------------------------------------------

_HINTS: tuple[str | None, ...] = (
    None,
    "gs1-128",
    "gs1-qr",
    "gs1-datamatrix",
    "ean13",
    "ean8",
    "upca",
    "keyed",
    "nfc",
    " NFC ",
    "qr",
    "",
    "code128",
    "unknown",
    "Gs1-DataBar",
    "aim-F0",
)
_SETTINGS = (
    NormaliserSettings(),
    NormaliserSettings.model_validate(
        {
            "custom": [{"name": "v", "kind": "v", "pattern": r"V(\d+)?", "value_group": 1}],
            "gift_hosts": ["giftlocal.com", "example.org"],
            "receipt_short_keys": [0, 42, 8191],
        }
    ),
    NormaliserSettings(max_length=8),
    # The built-in rules in reverse: every rule gets to claim what an earlier one would have.
    NormaliserSettings(rules=[k.value for k in reversed(Kind) if k is not Kind.UNKNOWN]),
)
# What framing says when it rejects a scan: the only errors a secret token may carry, and none
# of them quotes the scan.
_FRAMING_ERROR = re.compile(
    r"not valid UTF-8 at byte \d+|empty scan|scan is \d+ characters; the limit is \d+"
    r"|control character 0x[0-9A-F]{2} at position \d+"
)
_TOKEN_ID = re.compile(r"tok_[0-9a-f]{16}")
# The value of a valid token of each built-in kind, written apart from the rules: the codes the
# flows send to providers; GTINs and coupons also need a right check digit (`_mod10_ok`).
_VALUE_SHAPES = {
    Kind.PRODUCT_GTIN: re.compile(r"[0-9]{8}|[0-9]{13,14}"),
    Kind.COUPON: re.compile(r"(?:98[1-4][0-9]|99[0-9]{2})[0-9]{9}"),
    Kind.GIFT_VOUCHER_CODE: re.compile(r"[0-9]{12}"),
    Kind.LOYALTY_RECEIPT: re.compile(r"[0-9]{12}"),
    Kind.LOYALTY_REDEMPTION_CODE: re.compile(r"[0-9]{7}"),
    Kind.LOYALTY_CARD: re.compile(r"[0-9]{16}"),
    Kind.PHONE: re.compile(r"[0-9]{10}"),
    Kind.EMAIL: re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+"),
    Kind.LOYALTY_SINGLE_SCAN: re.compile(
        r"[0-9a-f]{6,34}|[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}"
    ),
    Kind.GIFT_VOUCHER_TOKEN: re.compile(r"[^/\s]+"),
    NFC_UID: re.compile(r"[0-9A-F]{8}|[0-9A-F]{14}|[0-9A-F]{20}"),
}


_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Unicode categories a screen or a log line never gets raw: controls (a raw ESC drives a
terminal), invisible format characters (bidi overrides), line separators, lone surrogates."""


def _shows_nothing_hidden(text: str) -> bool:
    return not any(unicodedata.category(c) in _HIDDEN for c in text)


def _mod10_ok(digits: str) -> bool:
    """GS1 check digit, check digit included: weights 1, 3, 1... from the right."""
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits))) % 10 == 0


def _pipeline(normaliser: Normaliser) -> tuple[ScanPipeline, TokenVault]:
    vault = TokenVault()
    devices = DeviceRegistry(lambda record: None)
    devices.add("fuzz", "serial")
    return ScanPipeline(normaliser, vault, devices, lambda m: None, lambda e: None, {}), vault


_NORMALISERS = tuple(Normaliser(settings) for settings in _SETTINGS)
_PIPELINES = tuple(_pipeline(normaliser) for normaliser in _NORMALISERS)


def normaliser(data: bytes) -> None:
    """Any bytes with any hint become one well-formed token, and the scan message published for
    them shows a secret code only masked."""
    (option,), scan = _options(data)
    which = option & 0x03
    hint = _HINTS[option >> 2 & 0x0F]
    normaliser = _NORMALISERS[which]
    token = normaliser.normalise(scan, hint)
    _check_token(token)
    assert normaliser.normalise(scan + b" \r\n", hint) == token, "a terminator changed the token"
    pipeline, vault = _PIPELINES[which]
    message = pipeline.scan(RawScan("fuzz", scan, hint))
    if message.token_id is not None:
        entry = vault.get(message.token_id)
        assert entry is not None, "the published token_id is not in the vault"
        token = entry.token
    _check_message(message, token)


def _check_token(token: Token) -> None:
    assert token.valid is (token.error is None), token
    assert token.error is None or token.error, token
    assert token.symbology, token
    if token.valid:
        # Framing lets nothing through that a screen or a provider would choke on.
        assert not any(unicodedata.category(c) == "Cc" and c != gs1.GS for c in token.value), token
        token.value.encode("utf-8")  # raises on a lone surrogate
        shape = _VALUE_SHAPES.get(token.kind)
        assert shape is None or shape.fullmatch(token.value), f"not a {token.kind}: {token}"
        if token.kind in (Kind.PRODUCT_GTIN, Kind.COUPON):
            assert _mod10_ok(token.value), f"wrong check digit: {token}"
        if token.kind in (Kind.EMAIL, Kind.LOYALTY_SINGLE_SCAN):
            assert token.value == token.value.lower(), token
    if token.ais is not None:
        assert (token.kind, token.valid) == (Kind.GS1, True), token
        assert gs1.parse(token.value) == token.ais, "a GS1 value does not parse back to its AIs"
    if token.rule == "framing":
        assert (token.kind, token.valid) == (Kind.UNKNOWN, False), token
    if token.secret and token.error is not None:
        assert token.rule == "framing", token
        assert _FRAMING_ERROR.fullmatch(token.error), f"an error may quote a secret: {token}"


def _check_message(message: ScanMessage, token: Token) -> None:
    message.model_dump_json()  # it can be published
    if message.kind != NFC_UID:
        assert (message.kind, message.valid, message.error, message.symbology) == (
            token.kind,
            token.valid,
            token.error,
            token.symbology,
        ), (message, token)
    assert message.valid is (message.token_id is not None), message
    assert message.token_id is None or _TOKEN_ID.fullmatch(message.token_id), message
    assert message.ais is None or message.kind == Kind.GS1, message
    assert _shows_nothing_hidden(message.display), message.display
    if message.kind == NFC_UID:
        _check_token(token)
    assert token.secret or token.kind in PUBLIC_KINDS, f"a {token.kind} is not masked"
    if not token.secret:
        assert message.value == token.value, message
        assert message.display == printable(token.value), message
        return
    assert message.value is None, f"a secret's clear value is published: {message}"
    # The display of a secret shows at most its last four characters, and never more than a third.
    # The display of a secret is bullets, then at most its last four characters (escaped), never
    # more than a third of it.
    value, display = token.value, message.display
    assert any(
        display.endswith(printable(value[len(value) - n :]))
        and set(display[: len(display) - len(printable(value[len(value) - n :]))]) <= {MASK}
        for n in range(min(4, len(value) // 3) + 1)
    ), (display, value)


# --- GS1 element strings ---------------------------------------------------------------------


def gs1_parser(data: bytes) -> None:
    """Any text either parses to AIs of the table whose values survive both written forms, or
    raises GS1Error with a message."""
    text = data.decode("utf-8", "replace")
    ais, error = _parse_gs1(text)
    if error is not None:
        assert error, "a GS1Error without a message"
        return
    assert ais, f"{text!r} parsed to no AI"
    for ai, value in ais.items():
        assert ai in gs1.AIS and _ai_format(ai).fullmatch(value), (ai, value)
        _check_linted(ai, value)
    assert list(gs1.parse(gs1.render(ais)).items()) == list(ais.items()), "render round trip"
    assert list(gs1.parse(_scanner_form(ais)).items()) == list(ais.items()), "raw round trip"


def _parse_gs1(text: str) -> tuple[dict[str, str], str | None]:
    """The AIs, or the GS1Error's message; any other exception is the parser's bug."""
    try:
        return gs1.parse(text), None
    except gs1.GS1Error as exc:
        return {}, str(exc)


_CSETS = {
    "N": "0-9",
    "X": "!\"%&'()*+,\\-./0-9:;<=>?A-Z_a-z",  # GS1 CSET 82
    "Y": "#\\-/0-9A-Z",  # GS1 CSET 39
}
_FORMATS: dict[str, re.Pattern[str]] = {}


def _ai_format(ai: str) -> re.Pattern[str]:
    """The AI's format as a regular expression, written from its table entry (`N13,csum [X..17]`),
    not from the parser's own checks."""
    if ai not in _FORMATS:
        pattern = ""
        for part in gs1.AIS[ai].parts:
            chars = f"[{_CSETS[part.charset]}]{{{part.min_length},{part.max_length}}}"
            pattern += f"(?:{chars})?" if part.optional else chars
        _FORMATS[ai] = re.compile(pattern)
    return _FORMATS[ai]


def _check_linted(ai: str, value: str) -> None:
    """Check digits, dates and times of an accepted value, checked with the standard library."""
    start = 0
    for part in gs1.AIS[ai].parts:
        chunk = value[start : start + part.max_length]
        start += part.max_length
        if part.linter == "csum":
            assert _mod10_ok(chunk), f"({ai}){value}: wrong check digit accepted"
        elif part.linter in ("yymmdd", "yymmd0", "yymmddhh"):
            day = int(chunk[4:6]) or (1 if part.linter == "yymmd0" else 0)
            datetime.date(2000 + int(chunk[:2]), int(chunk[2:4]), day)  # raises on a bad date
            assert int(chunk[6:] or 0) <= 23, f"({ai}){value}: bad hour accepted"
        elif part.linter == "hhmm":
            datetime.time(int(chunk[:2]), int(chunk[2:]))  # raises on a bad time


def _scanner_form(ais: dict[str, str]) -> str:
    """What a scanner sends after `]C1`: GS after every field but the last and the predefined
    length ones."""
    out = []
    for i, (ai, value) in enumerate(ais.items()):
        out.append(ai + value)
        if i < len(ais) - 1 and not gs1.AIS[ai].predefined:
            out.append(gs1.GS)
    return "".join(out)


# --- HID-POS reports -------------------------------------------------------------------------

_HIDPOS_LIMITS = (1, 8, 55, 56, 57, 112, 200, 8192)


def hidpos(data: bytes) -> None:
    """Any stream of reports is decoded without raising, within the length limit; afterwards a
    well-formed barcode (the input itself) decodes exactly, and nothing is left held. With bit 3
    of the option byte set, the input is a report descriptor instead."""
    (option,), stream = _options(data)
    if option & 0x08:
        assert isinstance(is_barcode_scanner(stream), bool)
        assert is_barcode_scanner(REPORT_DESCRIPTOR + stream), "a scanner behind other items"
        return
    assembler = ReportAssembler(max_length=_HIDPOS_LIMITS[option & 0x07])
    malformed = 0
    for report in _reports(stream):
        out = assembler.feed(report)
        if isinstance(out, MalformedReport):
            malformed += 1
            assert out.reason, out
        elif out is not None:
            _check_scan(out, assembler.max_length)
    assert assembler.malformed == malformed, (assembler.malformed, malformed)
    assert assembler.reset() <= assembler.max_length, "held more than a barcode's limit"
    aim = stream[:3].decode("latin-1") if re.fullmatch(rb"\][!-~]{2}", stream[:3]) else None
    outs = [assembler.feed(report) for report in build_reports(stream, aim)]
    if len(stream) <= assembler.max_length:
        expected = DecodedScan((aim or "").encode("ascii") + stream, aim)
        assert outs == [None] * (len(outs) - 1) + [expected], outs
    else:
        assert [type(out) for out in outs if out is not None] == [MalformedReport], outs
    assert assembler.reset() == 0, "a complete barcode left something held"


def _reports(stream: bytes) -> list[bytes]:
    """Cut the stream into reports: a length byte, then that many bytes; a length byte of 0x40
    or more means a whole 64-byte report, the size the scanner sends."""
    reports = []
    pos = 0
    while pos < len(stream):
        size = stream[pos] if stream[pos] < 0x40 else 64
        reports.append(stream[pos + 1 : pos + 1 + size])
        pos += 1 + size
    return reports


def _check_scan(scan: DecodedScan, max_length: int) -> None:
    if scan.aim is None:
        payload = scan.data
    else:
        assert re.fullmatch(r"\][!-~]{2}", scan.aim), scan
        assert scan.data.startswith(scan.aim.encode("ascii")), scan
        payload = scan.data[3:]
    assert len(payload) <= max_length, (len(payload), max_length)


# --- serial framing --------------------------------------------------------------------------

_FRAMINGS = tuple(Framing)
_FRAMER_LIMITS = (1, 2, 3, 8, 64, 4096)
_TERMINATORS = {
    Framing.CR: b"\r",
    Framing.LF: b"\n",
    Framing.CRLF: b"\r\n",
    Framing.ANY_EOL: b"\n",
}
# What a scan can never contain, and where the stream splits into frames.
_DELIMITERS = {
    Framing.CR: re.compile(rb"\r"),
    Framing.LF: re.compile(rb"\n"),
    Framing.CRLF: re.compile(rb"\r\n"),
    Framing.ANY_EOL: re.compile(rb"[\r\n]"),
    Framing.STX_ETX: re.compile(rb"[\x02\x03]"),
}


def framing(data: bytes) -> None:
    """However the port cuts the stream (whole, or every n bytes: byte by byte for n = 1), the
    framer finds the same scans and counts the same; every scan fits the limit; frames written by
    the rules come back exactly."""
    (option, step), stream = _options(data, 2)
    mode = _FRAMINGS[option % len(_FRAMINGS)]
    limit = _FRAMER_LIMITS[option // len(_FRAMINGS) % len(_FRAMER_LIMITS)]
    every = step % 16 + 1
    whole = _frame(mode, limit, [stream])
    cut = _frame(mode, limit, [stream[i : i + every] for i in range(0, len(stream), every)])
    assert cut == whole, (mode, limit, every, whole, cut)
    delimiter = _DELIMITERS[mode]
    for scan in whole[0]:
        assert scan and len(scan) <= limit and not delimiter.search(scan), (mode, limit, scan)
    frames = [f for f in delimiter.split(stream) if f and len(f) <= limit]
    if mode is Framing.STX_ETX:
        written = b"".join(bytes((STX,)) + f + bytes((ETX,)) for f in frames)
    else:
        written = b"".join(f + _TERMINATORS[mode] for f in frames)
    assert _frame(mode, limit, [written]) == (frames, 0, 0, b"", None), (mode, limit, frames)


def _frame(
    mode: Framing, limit: int, chunks: list[bytes]
) -> tuple[list[bytes], int, int, bytes, bytes | None]:
    """(scans, discarded, overruns, pending, flushed) after feeding the chunks in turn."""
    framer = Framer(mode, max_length=limit)
    scans = []
    for chunk in chunks:
        scans += framer.feed(chunk)
        assert len(framer.pending()) <= limit + 1, "the framer holds more than a frame"
    pending = framer.pending()
    flushed = framer.flush()
    assert flushed == (pending or None) and framer.pending() == b"", (pending, flushed)
    return scans, framer.discarded, framer.overruns, pending, flushed


# --- MQTT requests ---------------------------------------------------------------------------


class _MemoryStore(ResponseStore):
    """The real store's params digest, its answers kept in memory: a million requests must not
    write a million rows to disk. Emptied before every input."""

    def __init__(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="lane-agent-fuzz-"))
        super().__init__(folder / "requests.sqlite")
        shutil.rmtree(folder)  # only the key is used from here on, and it is in memory
        self.kept: dict[str, tuple[FirstUse, Response]] = {}

    def get(self, request_id: str) -> tuple[FirstUse, Response] | None:
        return self.kept.get(request_id)

    def put(self, request_id: str, first: FirstUse, answer: Response) -> None:
        self.kept.setdefault(request_id, (first, answer))


class _Handler:
    """Every op's handler: records the params it was given and succeeds."""

    def __init__(self) -> None:
        self.calls: list[Request] = []

    async def __call__(self, params: Request) -> BaseModel:
        self.calls.append(params)
        return HealthResult(ok=True, items=[])


_MAX_PAYLOAD = 2048
_DECODE_ERRORS = {ErrorCode.INVALID_REQUEST, ErrorCode.UNKNOWN_OP}
_STORE = _MemoryStore()
_HANDLER = _Handler()
_ROUTER = RequestRouter(_STORE, dict.fromkeys(OPS, _HANDLER), max_payload=_MAX_PAYLOAD)
_LOOP = asyncio.new_event_loop()


def requests(data: bytes) -> None:
    """Any payload on any op gets one publishable answer: the params the handler runs with, or
    a clear decode error; the request_id echoed when there is one; a repeat answered the same
    without running the op twice. The input is the op (the topic's last level), a newline, and
    the payload."""
    topic, _, payload = data.partition(b"\n")
    op = topic.decode("utf-8", "replace")
    _STORE.kept.clear()
    _HANDLER.calls.clear()
    answer = _LOOP.run_until_complete(_ROUTER.handle(op, payload))
    answer.model_dump_json()  # it can be published
    request_id = _request_id(payload)
    assert answer.request_id in (None, request_id), (answer.request_id, request_id)
    if answer.status == "ok":
        assert op in OPS and answer.error is None and answer.data is not None, answer
        assert answer.request_id == request_id is not None, answer
        (params,) = _HANDLER.calls
        assert type(params) is OPS[op].params and params.request_id == request_id, params
        # What the handler acts on (and the digest compares) reads back as itself.
        assert type(params).model_validate_json(params.model_dump_json()) == params, params
        assert type(params).model_validate(params.model_dump(mode="json")) == params, params
    else:
        assert answer.error is not None and answer.data is None, answer
        assert answer.error.code in _DECODE_ERRORS and answer.error.message, answer.error
        assert _shows_nothing_hidden(answer.error.message), answer.error
        # An unknown op is named as such once the payload is a request (it has a request_id).
        unknown_op = op not in OPS and answer.request_id is not None
        assert (answer.error.code is ErrorCode.UNKNOWN_OP) is unknown_op, (op, answer)
        assert not _HANDLER.calls, "an op ran for a request that was refused"
    again = _LOOP.run_until_complete(_ROUTER.handle(op, payload))
    assert again.model_dump(exclude={"ts"}) == answer.model_dump(exclude={"ts"}), (answer, again)
    if answer.status == "ok":
        runs = 2 if OPS[op].reads_only else 1  # a read's answer is not kept
        assert len(_HANDLER.calls) == runs, "a repeated request_id ran the op again"


def _request_id(payload: bytes) -> str | None:
    """The request_id an answer may echo: a non-empty string at the top of a JSON object, in
    UTF-8 (json.loads would also take bytes in UTF-16 or with a BOM, which the agent refuses)."""
    if len(payload) > _MAX_PAYLOAD:
        return None
    try:
        value = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    request_id = value.get("request_id") if isinstance(value, dict) else None
    return request_id if isinstance(request_id, str) and request_id else None


TARGETS: dict[str, Harness] = {
    "normaliser": normaliser,
    "gs1": gs1_parser,
    "hidpos": hidpos,
    "framing": framing,
    "requests": requests,
}
"""Every harness, by the name `make fuzz` and the corpus directory use."""

MAX_LENGTHS: dict[str, int] = {
    "normaliser": 1024,  # past the default 512-character limit
    "gs1": 512,  # the default scan limit
    "hidpos": 1024,  # 15 full reports
    "framing": 256,  # fed byte by byte, among others: the framer copies its buffer per read
    "requests": 4096,  # past the 2048-byte payload limit
}
"""The longest input libFuzzer makes per target."""


def _schema_words(schema: object) -> set[str]:
    """Property names and enumerated values anywhere in a JSON Schema."""
    if isinstance(schema, list):
        return set().union(*map(_schema_words, schema))
    if not isinstance(schema, dict):
        return set()
    words = set(schema.get("properties", {}))
    words.update(v for v in schema.get("enum", []) if isinstance(v, str))
    if isinstance(schema.get("const"), str):
        words.add(schema["const"])
    return words.union(*map(_schema_words, schema.values()))


_REQUEST_WORDS = set().union(*(_schema_words(s.params.model_json_schema()) for s in OPS.values()))
DICTIONARIES: dict[str, list[bytes]] = {
    # The regular expressions the rules match with are not instrumented: their landmarks.
    "normaliser": [
        *(f"]{aim}".encode() for aim in ("C1", "Q3", "d2", "e0", "E0", "E4", "Q1", "F0")),
        *(b"http://", b"https://", b"giftlocal.com", b"example.org", b"Punchh", b"(01)"),
        *(b"@", b".com", b"+1 ", b"\x1d", b"\r\n", b"-", b"  "),
    ],
    # JSON is parsed and validated in C and Rust, out of libFuzzer's sight: the contract's words.
    "requests": [
        *(op.encode() + b"\n" for op in sorted(OPS)),
        *(json.dumps(word).encode() for word in sorted(_REQUEST_WORDS)),
        *(b'"tok_0123456789abcdef"', b"null", b"true", b"-1", b"1e400", b"NaN", b'"\\ud800"'),
    ],
}
"""libFuzzer dictionaries: fragments it splices into inputs, per target."""

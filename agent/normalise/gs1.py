"""GS1 element strings: the AI table, parsing (raw FNC1/GS form and `(AI)value` form), rendering.

The AI table is the retail and logistics subset of the GS1 General Specifications that a checkout
lane can meet; an AI outside it is reported by name rather than guessed at. Formats use the GS1
notation: `N14` is exactly 14 digits, `X..20` is 1 to 20 characters of the GS1 82-character set,
a part in brackets is optional.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass

GS = "\x1d"
"""ASCII group separator: how a scanner transmits FNC1 between variable-length fields."""

_DIGITS = re.compile(r"[0-9]*")
# CSET 82: ! " % & ' ( ) * + , - . / 0-9 : ; < = > ? A-Z _ a-z
_CSET82 = re.compile(r"[!\"%-?A-Z_a-z]*")
# CSET 39: # - / 0-9 A-Z
_CSET39 = re.compile(r"[#\-/0-9A-Z]*")
_CHARSETS = {"N": _DIGITS, "X": _CSET82, "Y": _CSET39}
_CHARSET_NAMES = {"N": "digits", "X": "GS1 characters", "Y": "GS1 CSET 39 characters"}


def check_digit(body: str) -> int:
    """GS1 mod-10 check digit of `body` (the digits before the check digit): weights 3,1,3... from
    the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def check_digit_error(label: str, digits: str) -> str | None:
    """The error for a wrong final check digit of `digits` (ASCII digits only), or None."""
    expected = check_digit(digits[:-1])
    if int(digits[-1]) == expected:
        return None
    return f"GS1 check digit of {label} is {digits[-1]}, expected {expected}"


def _date_error(value: str, allow_day_zero: bool) -> str | None:
    # The century only matters for 29 February, and YY % 4 settles that for every year a GS1
    # date can mean (GS1 reads YY as within 49 years back and 50 ahead of today).
    year, month, day = 2000 + int(value[0:2]), int(value[2:4]), int(value[4:6])
    if not 1 <= month <= 12:
        return f"month {value[2:4]} in date {value} is not 01-12"
    last = calendar.monthrange(year, month)[1]
    if not (0 if allow_day_zero else 1) <= day <= last:
        return f"day {value[4:6]} in date {value} does not exist"
    return None


def _hour_error(value: str) -> str | None:
    return None if int(value) <= 23 else f"hour {value} is not 00-23"


def _hhmm_error(value: str) -> str | None:
    if int(value[:2]) > 23 or int(value[2:]) > 59:
        return f"time {value} is not a valid HHMM"
    return None


# Linters run on a part once its characters and length are right. `csum` is handled apart
# because its message names the identifier (GTIN, SSCC, GLN ...).
_LINTERS: dict[str, Callable[[str], str | None]] = {
    "yymmd0": lambda v: _date_error(v, allow_day_zero=True),
    "yymmdd": lambda v: _date_error(v, allow_day_zero=False),
    "yymmddhh": lambda v: _date_error(v[:6], allow_day_zero=False) or _hour_error(v[6:]),
    "hhmm": _hhmm_error,
}


@dataclass(frozen=True, slots=True)
class Part:
    """One component of an AI's data field, e.g. `N13,csum` or the optional `[X..17]`."""

    charset: str
    min_length: int
    max_length: int
    linter: str | None
    optional: bool


@dataclass(frozen=True, slots=True)
class AISpec:
    ai: str
    title: str
    format: str
    parts: tuple[Part, ...]
    predefined: bool
    """Predefined length (`*` in the GS1 table): no FNC1 separator is needed after it."""
    fixed_length: int | None
    """Data length when every part is fixed, else None: the field ends at GS or at the end."""


_PART = re.compile(r"(\[)?([NXY])(\.\.)?([0-9]+)(?:,([a-z0-9]+))?\]?")
_LINTER_SUFFIX = re.compile(r",[a-z0-9]+")


def _spec(ai: str, predefined: bool, fmt: str, title: str) -> AISpec:
    parts = []
    for word in fmt.split():
        m = _PART.fullmatch(word)
        assert m is not None, word
        length = int(m[4])
        parts.append(Part(m[2], 1 if m[3] else length, length, m[5], optional=m[1] is not None))
    fixed = (
        None
        if any(p.optional or p.min_length != p.max_length for p in parts)
        else sum(p.min_length for p in parts)
    )
    readable = _LINTER_SUFFIX.sub("", fmt).replace(" ", "+")
    return AISpec(ai, title, readable, tuple(parts), predefined, fixed)


# (AI or first-last range, predefined length, format, title used in messages)
_TABLE: tuple[tuple[str, bool, str, str], ...] = (
    ("00", True, "N18,csum", "SSCC"),
    ("01", True, "N14,csum", "GTIN"),
    ("02", True, "N14,csum", "GTIN of contained items"),
    ("10", False, "X..20", "batch/lot"),
    ("11", True, "N6,yymmd0", "production date"),
    ("12", True, "N6,yymmd0", "due date"),
    ("13", True, "N6,yymmd0", "packaging date"),
    ("15", True, "N6,yymmd0", "best before date"),
    ("16", True, "N6,yymmd0", "sell by date"),
    ("17", True, "N6,yymmd0", "expiry date"),
    ("20", True, "N2", "variant"),
    ("21", False, "X..20", "serial number"),
    ("22", False, "X..20", "consumer product variant"),
    ("235", False, "X..28", "third-party serial (TPX)"),
    ("240", False, "X..30", "additional product id"),
    ("241", False, "X..30", "customer part number"),
    ("242", False, "N..6", "made-to-order variant"),
    ("243", False, "X..20", "packaging component number"),
    ("250", False, "X..30", "secondary serial number"),
    ("251", False, "X..30", "reference to source entity"),
    ("253", False, "N13,csum [X..17]", "GDTI"),
    ("254", False, "X..20", "GLN extension"),
    ("255", False, "N13,csum [N..12]", "GCN"),
    ("30", False, "N..8", "variable count"),
    ("3100-3165", True, "N6", "trade measure (metric)"),
    ("3200-3295", True, "N6", "trade measure (imperial)"),
    ("3300-3375", True, "N6", "logistic measure (metric)"),
    ("3400-3495", True, "N6", "logistic measure (imperial)"),
    ("3500-3575", True, "N6", "area or net measure"),
    ("3600-3695", True, "N6", "volume"),
    ("37", False, "N..8", "count of trade items"),
    ("3900-3909", False, "N..15", "amount payable"),
    ("3910-3919", False, "N3 N..15", "amount payable with currency"),
    ("3920-3929", False, "N..15", "price"),
    ("3930-3939", False, "N3 N..15", "price with currency"),
    ("3940-3943", False, "N4", "percentage discount"),
    ("3950-3955", False, "N6", "price per unit of measure"),
    ("400", False, "X..30", "order number"),
    ("401", False, "X..30", "GINC"),
    ("402", False, "N17,csum", "GSIN"),
    ("403", False, "X..30", "routing code"),
    ("410-417", True, "N13,csum", "GLN"),
    ("420", False, "X..20", "ship-to postal code"),
    ("421", False, "N3 X..9", "ship-to postal code with country"),
    ("422", False, "N3", "country of origin"),
    ("423", False, "N..15", "country of initial processing"),
    ("424", False, "N3", "country of processing"),
    ("425", False, "N..15", "country of disassembly"),
    ("426", False, "N3", "country of full process chain"),
    ("427", False, "X..3", "country subdivision of origin"),
    ("7001", False, "N13", "NATO stock number"),
    ("7002", False, "X..30", "meat cut"),
    ("7003", False, "N6,yymmdd N4,hhmm", "expiry date and time"),
    ("7006", False, "N6,yymmdd", "first freeze date"),
    ("710-715", False, "X..20", "national healthcare reimbursement number"),
    ("7240", False, "X..20", "protocol id"),
    ("8002", False, "X..20", "cellular phone id"),
    ("8003", False, "N1 N13,csum [X..16]", "GRAI"),
    ("8004", False, "X..30", "GIAI"),
    ("8005", False, "N6", "price per unit"),
    ("8006", False, "N14,csum N4", "ITIP"),
    ("8007", False, "X..34", "IBAN"),
    ("8008", False, "N8,yymmddhh [N..4]", "production date and time"),
    ("8010", False, "Y..30", "component/part id"),
    ("8011", False, "N..12", "component/part serial"),
    ("8012", False, "X..20", "software version"),
    ("8013", False, "X..25", "GMN"),
    ("8017", False, "N18,csum", "GSRN (provider)"),
    ("8018", False, "N18,csum", "GSRN (recipient)"),
    ("8019", False, "N..10", "service relation instance number"),
    ("8020", False, "X..25", "payment slip reference"),
    ("8026", False, "N14,csum N4", "ITIP of contained items"),
    ("8110", False, "X..70", "coupon code (North America)"),
    ("8111", False, "N4", "loyalty points"),
    ("8112", False, "X..70", "paperless coupon code (North America)"),
    ("8200", False, "X..70", "product URL"),
    ("90", False, "X..30", "internal"),
    ("91-99", False, "X..90", "company internal"),
)


def _expand(ais: str) -> list[str]:
    first, _, last = ais.partition("-")
    if not last:
        return [first]
    # 3100-3165 means 310n..316n with n = 0..5: the last digit is a decimal-point position.
    if len(first) == 4 and first[3] == "0":
        head_lo, head_hi, n_max = int(first[:3]), int(last[:3]), int(last[3])
        return [f"{h}{n}" for h in range(head_lo, head_hi + 1) for n in range(n_max + 1)]
    return [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]


AIS: dict[str, AISpec] = {
    ai: _spec(ai, predefined, fmt, title)
    for ais, predefined, fmt, title in _TABLE
    for ai in _expand(ais)
}
"""Every AI this agent understands, by AI."""

# The GS1 AI length is fixed by its first two digits (GS1 General Specifications, AI prefix
# table); this names an unknown AI correctly in an error. Prefixes not listed are 2-digit AIs.
AI_LENGTH_BY_PREFIX: dict[str, int] = {
    **{p: 3 for p in ("23", "24", "25", "40", "41", "42", "71")},
    **{
        p: 4 for p in ("31", "32", "33", "34", "35", "36", "39", "43", "70", "72", "80", "81", "82")
    },
}


class GS1Error(ValueError):
    """Malformed GS1 data; the message names the AI and what is wrong."""


def _validate(spec: AISpec, value: str) -> None:
    ai, title = spec.ai, spec.title
    if not value:
        raise GS1Error(f"GS1 AI ({ai}) {title} has no data")
    length_error = GS1Error(
        f"GS1 AI ({ai}) {title} has {len(value)} characters; its format is {spec.format}"
    )
    pos = 0
    for part in spec.parts:
        chunk = value[pos : pos + part.max_length]
        if not chunk and part.optional:
            break
        if len(chunk) < part.min_length:
            raise length_error
        pos += len(chunk)
        ok = _CHARSETS[part.charset].match(chunk)
        assert ok is not None  # the patterns accept the empty prefix
        if ok.end() < len(chunk):
            raise GS1Error(
                f"GS1 AI ({ai}) {title} has {chunk[ok.end()]!r}; "
                f"only {_CHARSET_NAMES[part.charset]} are allowed there"
            )
        if part.linter == "csum":
            error = check_digit_error(f"{title} ({ai})", chunk)
        elif part.linter is not None:
            error = _LINTERS[part.linter](chunk)
            error = error and f"GS1 AI ({ai}) {title}: {error}"
        else:
            error = None
        if error:
            raise GS1Error(error)
    if pos < len(value):
        raise length_error


def _add(ais: dict[str, str], spec: AISpec, value: str) -> None:
    _validate(spec, value)
    if ais.setdefault(spec.ai, value) != value:
        raise GS1Error(f"GS1 AI ({spec.ai}) appears twice with different values")


def _parse_raw(text: str) -> dict[str, str]:
    ais: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        length = AI_LENGTH_BY_PREFIX.get(text[pos : pos + 2], 2)
        ai = text[pos : pos + length]
        if len(ai) < length or not (ai.isascii() and ai.isdigit()):
            raise GS1Error(f"expected a GS1 AI at position {pos}, found {ai!r}")
        spec = AIS.get(ai)
        if spec is None:
            raise GS1Error(f"unknown GS1 AI ({ai})")
        pos += length
        separator = text.find(GS, pos)
        if separator == -1:
            separator = end
        stop = separator if spec.fixed_length is None else min(separator, pos + spec.fixed_length)
        _add(ais, spec, text[pos:stop])
        pos = stop + 1 if stop == separator else stop
    return ais


_BRACKETED = re.compile(r"\(([0-9]{2,4})\)((?:\\\(|[^(])*)")
_ESCAPED_PAREN = "\\("


def _parse_bracketed(text: str) -> dict[str, str]:
    ais: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _BRACKETED.match(text, pos)
        if m is None:
            raise GS1Error(f"expected (AI) at position {pos}, found {text[pos : pos + 6]!r}")
        spec = AIS.get(m[1])
        if spec is None:
            raise GS1Error(f"unknown GS1 AI ({m[1]})")
        _add(ais, spec, m[2].replace(_ESCAPED_PAREN, "("))
        pos = m.end()
    return ais


def parse(text: str) -> dict[str, str]:
    """Parse a GS1 element string into `{AI: value}` in scan order, validating every field.

    Accepts the raw form a scanner sends after `]C1`/`]Q3`/`]d2`/`]e0` (GS between fields, an
    optional leading FNC1 GS, a trailing GS ignored) and the human-readable `(01)...(10)...` form,
    where a `(` inside a value is written `\\(`. Raises GS1Error.
    """
    text = text.removeprefix(GS).rstrip(GS)
    if not text:
        raise GS1Error("GS1 element string is empty")
    return _parse_bracketed(text) if text.startswith("(") else _parse_raw(text)


def render(ais: dict[str, str]) -> str:
    """The human-readable `(AI)value...` form; a `(` in a value is escaped as `\\(` so that
    `parse(render(ais)) == ais`."""
    return "".join(f"({ai}){value.replace('(', _ESCAPED_PAREN)}" for ai, value in ais.items())

"""Classification rules (brief §5 table) and the `[normaliser]` settings that order, switch off and
extend them.

A rule sees the framed payload and its symbology and either declines (None) or claims the scan
(a Match, possibly with an error: a claimed scan never falls through to a later rule).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from agent.normalise import gs1
from agent.normalise.kinds import PUBLIC_KINDS, Kind
from agent.providers import punchh_key


@dataclass(frozen=True, slots=True)
class Match:
    value: str
    error: str | None = None
    ais: dict[str, str] | None = None


Classifier = Callable[[str, str], Match | None]
"""(payload, symbology) -> Match, or None when the rule does not apply."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    kind: str
    secret: bool
    classify: Classifier


BUILTIN_RULE_NAMES: tuple[str, ...] = tuple(k.value for k in Kind if k is not Kind.UNKNOWN)
"""The built-in rules in their default order; each is named after the kind it produces."""

# Symbologies that say nothing about the code's structure: the table's "unknown symbology", and
# keyed entry, where a cashier types the digits printed under a barcode.
_UNTYPED = frozenset({"unknown", "keyed"})


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


_URL = re.compile(r"https?://\S+", re.IGNORECASE)


def _split_url(text: str) -> tuple[str, str] | None:
    """(host, path) of an http(s) URL with a host, else None."""
    if _URL.fullmatch(text) is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return None
    host = (parts.hostname or "").rstrip(".")
    return (host, parts.path) if host else None


def _gift_voucher_token(hosts: tuple[str, ...], text: str, symbology: str) -> Match | None:
    """A gift host's URL; one without a path segment has no token and is left to `url`."""
    url = _split_url(text)
    if url is None:
        return None
    host, path = url
    if not any(host == h or host.endswith("." + h) for h in hosts):
        return None
    segments = [s for s in path.split("/") if s]
    return Match(segments[-1]) if segments else None


def _url(text: str, symbology: str) -> Match | None:
    return Match(text) if _split_url(text) is not None else None


def _gs1(text: str, symbology: str) -> Match | None:
    if not symbology.startswith("gs1-"):
        return None
    try:
        ais = gs1.parse(text)
    except gs1.GS1Error as exc:
        return Match(text, str(exc))
    return Match(gs1.render(ais), ais=ais)


_COUPON_PREFIXES = ("981", "982", "983", "984", "99")


def _coupon(text: str, symbology: str) -> Match | None:
    """A coupon with a wrong check digit is not claimed: `product_gtin` reports the digit."""
    if (
        (symbology == "ean13" or symbology in _UNTYPED)
        and len(text) == 13
        and _digits(text)
        and text.startswith(_COUPON_PREFIXES)
        and gs1.check_digit(text[:-1]) == int(text[-1])
    ):
        return Match(text)
    return None


def _loyalty_receipt(short_keys: frozenset[int], text: str, symbology: str) -> Match | None:
    """A Punchh receipt barcode (EAN-13, or its QR code) of one of the configured locations, with
    a good parity digit and key checksum; the value is the 12-digit key. Anything else is left to
    `product_gtin`: a product code passes the 4-bit checksum one time in 16, so the location
    must match too."""
    if not (symbology in {"ean13", "qr"} or symbology in _UNTYPED) or not short_keys:
        return None
    try:
        key, parts = punchh_key.from_barcode(text)
    except ValueError:
        return None
    return Match(key) if parts.short_key in short_keys else None


_EAN_LENGTHS = {"ean13": 13, "ean8": 8}
_GTIN_LABELS = {8: "EAN-8", 13: "EAN-13", 14: "GTIN-14"}


def _product_gtin(text: str, symbology: str) -> Match | None:
    if not _digits(text):
        return None
    expected = _EAN_LENGTHS.get(symbology)
    if expected is None:
        if symbology not in _UNTYPED or len(text) not in _GTIN_LABELS:
            return None
        expected = len(text)
    label = _GTIN_LABELS[expected]
    if len(text) != expected:
        return Match(text, f"{label} has {len(text)} digits; expected {expected}")
    return Match(text, gs1.check_digit_error(label, text))


_GROUPED_DIGITS = re.compile(r"[0-9]+(?:[ -][0-9]+)*")


def _gift_voucher_code(text: str, symbology: str) -> Match | None:
    if symbology.startswith(("ean", "upc")) or _GROUPED_DIGITS.fullmatch(text) is None:
        return None
    digits = text.replace(" ", "").replace("-", "")
    return Match(digits) if len(digits) == 12 else None


def _exact_digits(count: int, text: str, symbology: str) -> Match | None:
    return Match(text) if len(text) == count and _digits(text) else None


_PHONE = re.compile(
    r"(?:\+1[ .-]?|1[ .-])?"  # NANP country code
    r"(?:\(([0-9]{3})\) ?|([0-9]{3})[ .-]?)"  # area code, maybe in parentheses
    r"([0-9]{3})[ .-]?([0-9]{4})"
)


def _phone(text: str, symbology: str) -> Match | None:
    m = _PHONE.fullmatch(text)
    return Match((m[1] or m[2]) + m[3] + m[4]) if m is not None else None


_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")


def _email(text: str, symbology: str) -> Match | None:
    return Match(text.lower()) if _EMAIL.fullmatch(text) is not None else None


# Punchh user QR: `Punchh...Punchh` (13-512 characters), `P` + 1-11, or `S` + 7 letters/digits.
_USER_QR = re.compile(r"Punchh.{1,500}Punchh|P[A-Za-z0-9]{1,11}|S[A-Za-z0-9]{7}")


def _loyalty_user_qr(text: str, symbology: str) -> Match | None:
    return Match(text) if _USER_QR.fullmatch(text) is not None else None


_SINGLE_SCAN = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # UUID
    r"|(?=[0-9]*[a-f])[0-9a-f]{6,34}",  # hex with at least one letter, so not a plain number
    re.IGNORECASE,
)


def _loyalty_single_scan(text: str, symbology: str) -> Match | None:
    return Match(text.lower()) if _SINGLE_SCAN.fullmatch(text) is not None else None


_BUILTIN: dict[str, Classifier] = {
    Kind.URL.value: _url,
    Kind.GS1.value: _gs1,
    Kind.COUPON.value: _coupon,
    Kind.PRODUCT_GTIN.value: _product_gtin,
    Kind.GIFT_VOUCHER_CODE.value: _gift_voucher_code,
    Kind.LOYALTY_REDEMPTION_CODE.value: partial(_exact_digits, 7),
    Kind.LOYALTY_CARD.value: partial(_exact_digits, 16),
    Kind.PHONE.value: _phone,
    Kind.EMAIL.value: _email,
    Kind.LOYALTY_USER_QR.value: _loyalty_user_qr,
    Kind.LOYALTY_SINGLE_SCAN.value: _loyalty_single_scan,
}


def _custom(pattern: re.Pattern[str], group: int | str, text: str, symbology: str) -> Match | None:
    """A custom rule whose value group took no part in the match produces no value: no match."""
    m = pattern.fullmatch(text)
    value = m.group(group) if m is not None else None
    return Match(value) if value is not None else None


def _error(kind: str, message: str) -> PydanticCustomError:
    # The message goes in as context, so braces in a user's regex are not format fields.
    return PydanticCustomError(kind, "{message}", {"message": message})


_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
_KIND_PATTERN = r"^[a-z][a-z0-9_]*$"
_HOST = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*")
_RESERVED_NAMES = frozenset({*BUILTIN_RULE_NAMES, Kind.UNKNOWN.value, "framing"})


class CustomRule(BaseModel):
    """A deployment's own rule: when `pattern` matches the whole framed payload, the scan gets
    `kind` and the value of group `value_group` (0: the whole payload)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME_PATTERN, description="rule name, as listed in `rules`")
    kind: str = Field(pattern=_KIND_PATTERN, description="token kind the rule produces")
    pattern: str = Field(description="Python regular expression, matched against the whole scan")
    value_group: int | str = Field(0, description="group number or name that gives the value")
    secret: bool = Field(True, description="mask the value on MQTT and in logs")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _error("regex", f"pattern does not compile: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _group_exists(self) -> Self:
        compiled = re.compile(self.pattern)
        group = self.value_group
        if isinstance(group, int) and not 0 <= group <= compiled.groups:
            raise _error(
                "value_group",
                f"value_group {group} does not exist; the pattern has {compiled.groups} group(s)",
            )
        if isinstance(group, str) and group not in compiled.groupindex:
            named = ", ".join(compiled.groupindex) or "none"
            raise _error(
                "value_group",
                f"value_group {group!r} is not a named group of the pattern (named: {named})",
            )
        return self


class NormaliserSettings(BaseModel):
    """The `[normaliser]` table of the config: brief §5 defaults, re-orderable and extensible.

    `custom` comes before `rules` so that the `rules` check knows the custom rule names.
    """

    model_config = ConfigDict(extra="forbid")

    gift_hosts: list[str] = Field(
        default=["giftlocal.com"],
        description="hosts (and their subdomains) whose URLs carry a gift voucher token",
    )
    custom: list[CustomRule] = Field(
        default=[], description="extra regex rules; by default they run before the built-in ones"
    )
    rules: list[str] | None = Field(
        default=None,
        description="rule names in the order they are tried; a rule left out is switched off "
        "(default: the custom rules, then the built-in ones in the brief's order)",
    )
    max_length: int = Field(default=512, ge=1, description="longest scan accepted, in characters")
    receipt_short_keys: list[int] = Field(
        default=[],
        description="Punchh location short keys whose receipt barcodes are `loyalty_receipt` "
        "scans (empty: none are)",
    )

    @field_validator("receipt_short_keys")
    @classmethod
    def _short_keys(cls, keys: list[int]) -> list[int]:
        for key in keys:
            if not 0 <= key <= punchh_key.MAX_SHORT_KEY:
                raise _error(
                    "short_key",
                    f"{key} is not a Punchh short key (0..{punchh_key.MAX_SHORT_KEY})",
                )
        return keys

    @field_validator("gift_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        names = []
        for host in hosts:
            name = host.strip().lower().rstrip(".")
            if _HOST.fullmatch(name) is None:
                raise _error(
                    "gift_host", f"{host!r} is not a host name; write it like giftlocal.com"
                )
            names.append(name)
        return names

    @field_validator("custom")
    @classmethod
    def _unique_names(cls, custom: list[CustomRule]) -> list[CustomRule]:
        seen: set[str] = set()
        for rule in custom:
            if rule.name in _RESERVED_NAMES:
                raise _error("rule_name", f"custom rule name {rule.name!r} is a built-in name")
            if rule.name in seen:
                raise _error("rule_name", f"custom rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return custom

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, rules: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if rules is None:
            return None
        custom: list[CustomRule] | None = info.data.get("custom")  # None: already reported
        known = [*BUILTIN_RULE_NAMES, *(rule.name for rule in custom or ())]
        seen: set[str] = set()
        for name in rules:
            if name == Kind.UNKNOWN:
                raise _error("rule", "'unknown' is the fall-through, not a rule; leave it out")
            if custom is not None and name not in known:
                raise _error("rule", f"unknown rule {name!r}; known: {', '.join(known)}")
            if name in seen:
                raise _error("rule", f"rule {name!r} is listed twice")
            seen.add(name)
        return rules


def compile_rules(settings: NormaliserSettings) -> tuple[Rule, ...]:
    """The rules in the order they are tried, built once per Normaliser."""
    builtin: dict[str, Classifier] = {
        **_BUILTIN,
        Kind.GIFT_VOUCHER_TOKEN.value: partial(_gift_voucher_token, tuple(settings.gift_hosts)),
        Kind.LOYALTY_RECEIPT.value: partial(
            _loyalty_receipt, frozenset(settings.receipt_short_keys)
        ),
    }
    rules = {
        name: Rule(name, name, name not in PUBLIC_KINDS, classify)
        for name, classify in builtin.items()
    }
    for custom in settings.custom:
        classify = partial(_custom, re.compile(custom.pattern), custom.value_group)
        rules[custom.name] = Rule(custom.name, custom.kind, custom.secret, classify)
    order = settings.rules
    if order is None:
        order = [*(c.name for c in settings.custom), *BUILTIN_RULE_NAMES]
    return tuple(rules[name] for name in order)

"""What the normaliser produces: a typed, immutable token (brief §5) and its JSON form."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.StrEnum):
    """Built-in token kinds, in the default classification order; `UNKNOWN` is the fall-through."""

    GIFT_VOUCHER_TOKEN = "gift_voucher_token"
    URL = "url"
    GS1 = "gs1"
    COUPON = "coupon"
    LOYALTY_RECEIPT = "loyalty_receipt"
    PRODUCT_GTIN = "product_gtin"
    GIFT_VOUCHER_CODE = "gift_voucher_code"
    LOYALTY_REDEMPTION_CODE = "loyalty_redemption_code"
    LOYALTY_CARD = "loyalty_card"
    PHONE = "phone"
    EMAIL = "email"
    LOYALTY_USER_QR = "loyalty_user_qr"
    LOYALTY_SINGLE_SCAN = "loyalty_single_scan"
    UNKNOWN = "unknown"


PUBLIC_KINDS = frozenset({Kind.PRODUCT_GTIN, Kind.COUPON, Kind.GS1, Kind.URL})
"""Kinds that are printed on packaging or public anyway; every other kind is a bearer secret or PII
and is masked on MQTT and in logs."""


@dataclass(frozen=True, slots=True)
class Token:
    """One normalised scan.

    `value` is the normalised value of the matching rule; for input rejected by framing it is the
    text decoded with `errors="replace"`, framing stripped. `rule` names the rule that matched:
    `"framing"` when the input was rejected before classification, `"unknown"` when no rule matched.
    """

    kind: str
    value: str
    symbology: str
    valid: bool
    error: str | None
    ais: dict[str, str] | None = None
    secret: bool = True
    rule: str = ""


def token_json(token: Token) -> dict[str, object]:
    """The `lane-agent parse` output object; `ais` only for GS1 tokens, never `secret` or `rule`."""
    out: dict[str, object] = {
        "kind": token.kind,
        "value": token.value,
        "symbology": token.symbology,
        "valid": token.valid,
        "error": token.error,
    }
    if token.kind == Kind.GS1:
        out["ais"] = token.ais
    return out

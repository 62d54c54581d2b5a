"""Amounts of money: integer minor units at every interface of the lane, turned into a
currency's decimal amount only at the edges (a provider's wire format, a cashier's text),
always through `Decimal`, never through binary floating point."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Final

# ISO 4217 currencies whose minor unit is not a hundredth.
_EXPONENTS: Final[Mapping[str, int]] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def exponent(currency: str) -> int:
    """Digits after the decimal point in `currency`'s amounts (2 unless ISO 4217 says else)."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_decimal(minor: int, currency: str) -> Decimal:
    """Integer minor units as the currency's decimal amount: 1250 USD → 12.50."""
    return Decimal(minor).scaleb(-exponent(currency))


def shown(minor: int, currency: str | None) -> str:
    """An amount as a cashier reads it in a step: `12.50 USD` (minor units without a currency)."""
    if currency is None:
        return f"{minor} (minor units)"
    return f"{to_decimal(minor, currency)} {currency}"

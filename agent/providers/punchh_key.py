"""The Punchh receipt key (`punchh_key`): 12 decimal digits the POS makes per check, sends in
every call about that check, and prints on the receipt so a guest can scan it later and earn.

What PAR publishes ("Implement the Punchh Barcode and QR Code Algorithm", PAR Punchh developer
portal; Punchh support "How Barcodes are generated"), and this module follows:

- the key is built from three values: rBits, a 22-bit pseudo-random number based on the POS
  check id; iBits, the 13-bit short key of the store location (so at most 8192 locations);
  cBits, a 4-bit checksum. 22 + 13 + 4 = 39 bits, which always fit 12 decimal digits;
- in the API the key is 12 digits; the receipt prints it as an EAN-13: the key and one parity
  (GS1 check) digit;
- a QR code is made from the barcode; Punchh prefers it where printers allow.

What the retrievable part of that page does not show (the order of the three fields, how rBits
come from the check id, the checksum formula, the QR payload) is in `UNCERTAIN`, the one place
to change once PAR's "POS Punchh Key and Barcode Generator" is at hand. Punchh checks the
checksum when a guest scans a receipt, so a key from a wrong layout is accepted by the APIs at
call time but fails that later scan ("Checksum error").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from agent.normalise.gs1 import check_digit

R_BITS: Final = 22
I_BITS: Final = 13
C_BITS: Final = 4
KEY_DIGITS: Final = 12
MAX_SHORT_KEY: Final = (1 << I_BITS) - 1
_WIDTHS: Final = {"r": R_BITS, "i": I_BITS, "c": C_BITS}
_KEY = re.compile(rf"[0-9]{{{KEY_DIGITS}}}")
_BARCODE = re.compile(rf"[0-9]{{{KEY_DIGITS + 1}}}")

Field = Literal["r", "i", "c"]


@dataclass(frozen=True)
class Layout:
    """The details of the algorithm that PAR's public page leaves out."""

    order: tuple[Field, Field, Field]
    """rBits, iBits, cBits from the most to the least significant bits of the 39-bit number."""
    random_bits: Callable[[str], int]
    """Check id → rBits (22 bits)."""
    checksum: Callable[[int, int], int]
    """(rBits, iBits) → cBits (4 bits)."""
    qr_payload: Callable[[str], str]
    """The 13 barcode digits → the text of the receipt's QR code."""


def _sha256_bits(check_id: str) -> int:
    digest = hashlib.sha256(check_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - R_BITS)


def _nibble_sum(r_bits: int, i_bits: int) -> int:
    value, total = (r_bits << I_BITS) | i_bits, 0
    while value:
        total += value & 0xF
        value >>= 4
    return total & 0xF


UNCERTAIN: Final = Layout(
    order=("r", "i", "c"),
    random_bits=_sha256_bits,
    checksum=_nibble_sum,
    qr_payload=lambda barcode: barcode,
)
"""UNCERTAIN (our guess; see the module docstring): fields in the published order r, i, c;
rBits the top 22 bits of SHA-256(check id); cBits the sum of the 4-bit groups of rBits|iBits
mod 16; the QR code carries the EAN-13 digits."""


@dataclass(frozen=True)
class KeyParts:
    """A key taken apart: its pseudo-random part, its location and its checksum."""

    r_bits: int
    short_key: int
    c_bits: int


def _pack(parts: dict[Field, int], layout: Layout) -> int:
    value = 0
    for name in layout.order:
        value = (value << _WIDTHS[name]) | parts[name]
    return value


def generate(check_id: str, short_key: int, layout: Layout = UNCERTAIN) -> str:
    """The 12-digit key of one check at one location; the same pair always gives the same key."""
    if not 0 <= short_key <= MAX_SHORT_KEY:
        raise ValueError(f"short key {short_key} is not a 13-bit number (0..{MAX_SHORT_KEY})")
    if not check_id:
        raise ValueError("a punchh key needs a check id")
    r_bits = layout.random_bits(check_id) & ((1 << R_BITS) - 1)
    c_bits = layout.checksum(r_bits, short_key) & ((1 << C_BITS) - 1)
    return f"{_pack({'r': r_bits, 'i': short_key, 'c': c_bits}, layout):0{KEY_DIGITS}d}"


def decode(key: str, layout: Layout = UNCERTAIN) -> KeyParts:
    """The parts of a 12-digit key; ValueError when it is not one or its checksum is wrong."""
    if not _KEY.fullmatch(key):
        raise ValueError("a punchh key is 12 digits")
    value = int(key)
    if value >> (R_BITS + I_BITS + C_BITS):
        raise ValueError("a punchh key is a 39-bit number; this one is larger")
    parts: dict[Field, int] = {}
    for name in reversed(layout.order):
        parts[name] = value & ((1 << _WIDTHS[name]) - 1)
        value >>= _WIDTHS[name]
    if layout.checksum(parts["r"], parts["i"]) & ((1 << C_BITS) - 1) != parts["c"]:
        raise ValueError("the punchh key's checksum is wrong")
    return KeyParts(parts["r"], parts["i"], parts["c"])


def ean13(key: str) -> str:
    """The 13 digits to print as the receipt barcode: the 12-digit key plus its GS1 check digit."""
    if not _KEY.fullmatch(key):
        raise ValueError("a punchh key is 12 digits")
    return f"{key}{check_digit(key)}"


def from_barcode(barcode: str, layout: Layout = UNCERTAIN) -> tuple[str, KeyParts]:
    """The key a scanned receipt barcode carries, and its parts; ValueError unless both its
    parity digit and the key's checksum hold."""
    if not _BARCODE.fullmatch(barcode):
        raise ValueError("a receipt barcode is 13 digits")
    key = barcode[:-1]
    if check_digit(key) != int(barcode[-1]):
        raise ValueError("the receipt barcode's parity digit is wrong")
    return key, decode(key, layout)


def qr_payload(key: str, layout: Layout = UNCERTAIN) -> str:
    """The text of the receipt's QR code, which Punchh derives from the barcode."""
    return layout.qr_payload(ean13(key))

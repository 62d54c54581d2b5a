"""The Punchh receipt key: 12 decimal digits the POS generates per check, sends with every call
about that check, and prints as an EAN-13 barcode (key + GS1 check digit) so a guest can scan the
receipt later and earn.

Punchh documents its composition, not its layout: rBits, a 22-bit pseudo-random number derived
from the POS check id; iBits, the 13-bit short key of the store location (`short_key` in the
location configuration, so at most 8192 locations); cBits, a 4-bit checksum. The bit order, the
derivation of rBits, the checksum formula and the zero-padding are NOT public. Punchh checks the
checksum when a guest scans a receipt, so a key from the wrong algorithm is accepted by the APIs
at call time but fails on a later scan ("Checksum error").

`provisional_key` therefore only honours the documented sizes. `KEY_GENERATOR` is the one place
that chooses the algorithm: replace it with PAR's ("POS Punchh Key and Barcode Generator") when
the brand obtains it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Protocol

from agent.normalise.gs1 import check_digit

R_BITS: Final = 22
I_BITS: Final = 13
C_BITS: Final = 4
KEY_DIGITS: Final = 12
MAX_SHORT_KEY: Final = (1 << I_BITS) - 1
_KEY = re.compile(rf"[0-9]{{{KEY_DIGITS}}}")


class KeyGenerator(Protocol):
    """(POS check id, location short key) → the 12-digit key; deterministic per pair."""

    def __call__(self, check_id: str, short_key: int) -> str: ...


def _nibble_sum(value: int) -> int:
    total = 0
    while value:
        total += value & 0xF
        value >>= 4
    return total & 0xF


def provisional_key(check_id: str, short_key: int) -> str:
    """rBits | iBits | cBits from high to low bits, zero-padded to 12 digits (UNCERTAIN layout:
    see the module docstring). rBits are the top 22 bits of SHA-256(check id); cBits the sum of
    the 4-bit groups of rBits|iBits, mod 16."""
    if not 0 <= short_key <= MAX_SHORT_KEY:
        raise ValueError(f"short key {short_key} is not a 13-bit number (0..{MAX_SHORT_KEY})")
    if not check_id:
        raise ValueError("a punchh key needs a check id")
    digest = hashlib.sha256(check_id.encode()).digest()
    r_bits = int.from_bytes(digest[:4], "big") >> (32 - R_BITS)
    body = (r_bits << I_BITS) | short_key
    return f"{(body << C_BITS) | _nibble_sum(body):0{KEY_DIGITS}d}"


KEY_GENERATOR: KeyGenerator = provisional_key
"""The algorithm every caller uses. UNCERTAIN until PAR's algorithm replaces it."""


def ean13(key: str) -> str:
    """The 13 digits to print as the receipt barcode: the 12-digit key plus its GS1 check digit."""
    if not _KEY.fullmatch(key):
        raise ValueError("a punchh key is 12 digits")
    return f"{key}{check_digit(key)}"

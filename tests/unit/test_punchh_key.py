"""The Punchh receipt key, its EAN-13 barcode and QR form, and the scanned receipt barcode.

What PAR publishes is pinned exactly: 22 + 13 + 4 bits in 12 digits, the location's 13-bit short
key inside the key, one key per (check id, short key), GS1 parity on the printed barcode (the
Punchh support examples). The field order, rBits derivation, checksum and QR payload are
`punchh_key.UNCERTAIN`; these tests hold for any layout that packs the published fields."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.normalise import Kind, Normaliser, NormaliserSettings
from agent.normalise.gs1 import check_digit
from agent.providers.punchh_key import (
    MAX_SHORT_KEY,
    UNCERTAIN,
    decode,
    ean13,
    from_barcode,
    generate,
    qr_payload,
)

check_ids = st.text(min_size=1, max_size=64)
short_keys = st.integers(0, MAX_SHORT_KEY)
PUBLISHED = [("315788232640", "3157882326401"), ("374951002060", "3749510020609")]
"""Punchh support articles: the receipt barcode 3157882326401, and the key 374951002060 "+ a
parity bit"."""
RECEIPTS = Normaliser(NormaliserSettings(receipt_short_keys=[6624, 42]))


@given(check_ids, short_keys)
def test_a_key_is_twelve_digits_deterministic_and_carries_its_location(
    check_id: str, short_key: int
) -> None:
    key = generate(check_id, short_key)
    assert len(key) == 12 and key.isascii() and key.isdigit()
    assert int(key) < 2**39  # rBits 22 + iBits 13 + cBits 4
    assert generate(check_id, short_key) == key
    assert decode(key).short_key == short_key


@given(check_ids, short_keys, short_keys)
def test_the_location_is_part_of_the_key(check_id: str, one: int, other: int) -> None:
    assert (generate(check_id, one) == generate(check_id, other)) == (one == other)


@given(check_ids, short_keys)
def test_a_printed_barcode_round_trips(check_id: str, short_key: int) -> None:
    key = generate(check_id, short_key)
    barcode = ean13(key)
    assert from_barcode(barcode) == (key, decode(key))
    assert qr_payload(key) == UNCERTAIN.qr_payload(barcode)


@given(check_ids, short_keys, st.integers(0, 12), st.integers(1, 9))
def test_one_misread_digit_is_always_refused(
    check_id: str, short_key: int, position: int, shift: int
) -> None:
    barcode = ean13(generate(check_id, short_key))
    digit = (int(barcode[position]) + shift) % 10
    misread = barcode[:position] + str(digit) + barcode[position + 1 :]
    with pytest.raises(ValueError, match="parity"):
        from_barcode(misread)


@given(st.text(alphabet="0123456789", min_size=0, max_size=14) | st.text(max_size=14))
def test_the_decoder_returns_a_consistent_key_or_refuses(text: str) -> None:
    try:
        key, parts = from_barcode(text)
    except ValueError:
        return
    assert ean13(key) == text and decode(key) == parts


@pytest.mark.parametrize(("key", "barcode"), PUBLISHED)
def test_the_published_examples_are_39_bit_keys_with_gs1_parity(key: str, barcode: str) -> None:
    assert ean13(key) == barcode and check_digit(key) == int(barcode[-1])
    assert int(key) < 2**39


@pytest.mark.parametrize("short_key", [-1, MAX_SHORT_KEY + 1])
def test_a_short_key_must_fit_13_bits(short_key: int) -> None:
    with pytest.raises(ValueError, match="13-bit"):
        generate("A-1", short_key)


def test_a_check_id_is_required() -> None:
    with pytest.raises(ValueError, match="check id"):
        generate("", 1)


@pytest.mark.parametrize(
    "bad", ["31578823264", "3157882326401", "31578823264x", "３１５７８８２３２６４０"]
)
def test_ean13_wants_exactly_twelve_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        ean13(bad)


def test_a_key_above_39_bits_is_not_a_punchh_key() -> None:
    with pytest.raises(ValueError, match="39-bit"):
        decode("999999999999")


# -- the scanned receipt barcode ----------------------------------------------------------------


@given(check_ids, st.sampled_from([6624, 42]), st.sampled_from(["]E0", "]Q1", ""]))
def test_a_scanned_receipt_of_a_configured_location_is_a_loyalty_receipt(
    check_id: str, short_key: int, prefix: str
) -> None:
    key = generate(check_id, short_key)
    payload = qr_payload(key) if prefix == "]Q1" else ean13(key)
    token = RECEIPTS.normalise(f"{prefix}{payload}\r".encode())
    assert (token.kind, token.value, token.valid, token.secret) == (
        Kind.LOYALTY_RECEIPT,
        key,
        True,
        True,
    )


@given(check_ids, short_keys)
def test_other_locations_and_unconfigured_lanes_see_a_product_code(
    check_id: str, short_key: int
) -> None:
    barcode = ean13(generate(check_id, short_key))
    if short_key not in (6624, 42):
        assert RECEIPTS.normalise(f"]E0{barcode}".encode()).kind == Kind.PRODUCT_GTIN
    assert Normaliser().normalise(f"]E0{barcode}".encode()).kind == Kind.PRODUCT_GTIN


def test_a_product_barcode_and_a_bad_checksum_stay_products() -> None:
    for barcode in ("4006381333931", PUBLISHED[0][1]):
        assert RECEIPTS.normalise(f"]E0{barcode}".encode()).kind == Kind.PRODUCT_GTIN


def test_short_keys_must_fit_13_bits() -> None:
    with pytest.raises(ValueError, match="short key"):
        NormaliserSettings(receipt_short_keys=[MAX_SHORT_KEY + 1])

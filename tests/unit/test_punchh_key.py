"""The Punchh receipt key and its EAN-13 barcode. The key's layout is provisional (the real one is
not public), so these tests pin what is documented: 12 digits, one key per (check id, short
key), a 13-bit short key, and GS1 parity for the printed barcode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.normalise import Normaliser
from agent.providers.punchh_key import MAX_SHORT_KEY, ean13, provisional_key

check_ids = st.text(min_size=1, max_size=64)
short_keys = st.integers(0, MAX_SHORT_KEY)
NORMALISER = Normaliser()


@given(check_ids, short_keys)
def test_a_key_is_always_twelve_digits_and_deterministic(check_id: str, short_key: int) -> None:
    key = provisional_key(check_id, short_key)
    assert len(key) == 12 and key.isascii() and key.isdigit()
    assert provisional_key(check_id, short_key) == key


@given(check_ids, short_keys, short_keys)
def test_the_location_is_part_of_the_key(check_id: str, one: int, other: int) -> None:
    assert (provisional_key(check_id, one) == provisional_key(check_id, other)) == (one == other)


@pytest.mark.parametrize("short_key", [-1, MAX_SHORT_KEY + 1])
def test_a_short_key_must_fit_13_bits(short_key: int) -> None:
    with pytest.raises(ValueError, match="13-bit"):
        provisional_key("A-1", short_key)


def test_a_check_id_is_required() -> None:
    with pytest.raises(ValueError, match="check id"):
        provisional_key("", 1)


@pytest.mark.parametrize(
    ("key", "barcode"),
    [("315788232640", "3157882326401"), ("374951002060", "3749510020609")],
)
def test_ean13_check_digit_matches_the_punchh_kb_examples(key: str, barcode: str) -> None:
    assert ean13(key) == barcode


@given(check_ids, short_keys)
def test_the_printed_barcode_scans_back_as_a_valid_ean13(check_id: str, short_key: int) -> None:
    barcode = ean13(provisional_key(check_id, short_key))
    token = NORMALISER.normalise(f"]E0{barcode}".encode())
    assert (token.symbology, token.valid, token.value) == ("ean13", True, barcode)


@pytest.mark.parametrize(
    "bad", ["31578823264", "3157882326401", "31578823264x", "３１５７８８２３２６４０"]
)
def test_ean13_wants_exactly_twelve_ascii_digits(bad: str) -> None:
    with pytest.raises(ValueError, match="12 digits"):
        ean13(bad)

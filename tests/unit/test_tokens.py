"""The token vault and masking: clear codes stay inside the agent."""

from __future__ import annotations

import logging
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from agent.logs import PrintableFormatter, printable
from agent.normalise import Kind, Normaliser, Token
from agent.tokens import MASK, TokenVault, display, mask


def gift(code: str) -> Token:
    return Token(kind=Kind.GIFT_VOUCHER_CODE, value=code, symbology="keyed", valid=True, error=None)


def test_mask_shows_only_the_last_digits_of_a_long_code() -> None:
    assert mask("100000000001") == MASK * 8 + "0001"
    assert mask("1234567") == MASK * 5 + "67"
    assert mask("123456") == MASK * 6


@given(st.text(min_size=1, max_size=600))
def test_mask_never_reveals_more_than_four_characters(value: str) -> None:
    masked = mask(value)
    revealed = masked.lstrip(MASK)
    assert printable(value[-4:]).endswith(revealed)
    assert len(masked) <= 12 + 4 * len("\\U0010ffff")
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Zl", "Zp", "Cs"} for c in masked)


def test_an_invalid_scans_tail_reaches_no_screen_or_log_with_a_raw_escape() -> None:
    """Issue 14, point 11: the last four characters of an invalid scan, raw ESC included, went
    to the log and to `display`."""
    token = Normaliser().normalise(b"\x1b]0;owned\x07abc\x1b[2J", None)
    assert not token.valid
    assert display(token) == MASK * 12 + "\\x1b[2J"
    assert "\x1b" not in display(token)


def test_display_keeps_non_secret_values() -> None:
    product = Token(
        kind="product_gtin",
        value="5901234123457",
        symbology="ean13",
        valid=True,
        error=None,
        secret=False,
    )
    assert display(product) == "5901234123457"
    assert display(gift("100000000001")) == mask("100000000001")


def test_same_code_same_token_id_and_lookup() -> None:
    vault = TokenVault()
    first = vault.put(gift("100000000001"), "keyed")
    assert vault.put(gift("100000000001"), "fifo") == first
    other = vault.put(gift("100000000002"), "keyed")
    assert other != first and first.startswith("tok_")
    entry = vault.get(first)
    assert entry is not None and entry.token.value == "100000000001" and entry.device_id == "fifo"


def test_tokens_expire_after_ttl() -> None:
    now = [0.0]
    vault = TokenVault(ttl=10, clock=lambda: now[0])
    token_id = vault.put(gift("100000000001"), "keyed")
    now[0] = 9.9
    assert vault.get(token_id) is not None
    now[0] = 10.1
    assert vault.get(token_id) is None and len(vault) == 0


def test_vault_is_bounded_and_forgets_the_oldest() -> None:
    vault = TokenVault(max_entries=3)
    ids = [vault.put(gift(f"10000000000{i}"), "keyed") for i in range(5)]
    assert len(vault) == 3
    assert vault.get(ids[0]) is None and vault.get(ids[1]) is None
    assert vault.get(ids[4]) is not None


def test_a_log_line_escapes_what_it_interpolates() -> None:
    """The agent's log formatter: a scan or topic with ESC or a newline cannot forge a line."""
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "scan %s", ("a\x1b[2J\nb",), None)
    line = PrintableFormatter("%(message)s").format(record)
    assert line == "scan a\\x1b[2J\\nb"

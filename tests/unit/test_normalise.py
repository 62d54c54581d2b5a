"""Brief §5 row by row: framing, every classification rule (valid and invalid), the settings."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from agent.normalise import (
    CustomRule,
    Kind,
    Normaliser,
    NormaliserSettings,
    Token,
    token_json,
)
from agent.normalise.framing import AIM_SYMBOLOGIES

DEFAULT = Normaliser()


def norm(data: bytes | str, hint: str | None = None, normaliser: Normaliser = DEFAULT) -> Token:
    return normaliser.normalise(data.encode() if isinstance(data, str) else data, hint)


def with_settings(**settings: object) -> Normaliser:
    return Normaliser(NormaliserSettings.model_validate(settings))


# --- framing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"hello world", b"hello world\r\n", b"hello world\n", b"hello world\r", b"hello world\t",
     b"  hello world  \r\n", b"hello world \t\r\n", b" hello world"],
)  # fmt: skip
def test_terminators_and_surrounding_spaces_are_dropped(data: bytes) -> None:
    token = norm(data)
    assert (token.kind, token.value, token.valid) == ("unknown", "hello world", True)


@pytest.mark.parametrize(
    ("aim", "symbology"),
    [("]E0", "ean13"), ("]E4", "ean8"), ("]C0", "code128"), ("]C1", "gs1-128"), ("]Q1", "qr"),
     ("]Q3", "gs1-qr"), ("]d1", "datamatrix"), ("]d2", "gs1-datamatrix"), ("]e0", "gs1-databar"),
     ("]A0", "code39"), ("]I0", "itf"), ("]L0", "pdf417"), ("]z0", "aztec")],
)  # fmt: skip
def test_brief_aim_identifiers(aim: str, symbology: str) -> None:
    assert AIM_SYMBOLOGIES[aim[1:]] == symbology
    payload = "10ABC" if symbology.startswith("gs1-") else "96385074"
    token = norm(f"{aim}{payload}\r\n", hint="keyed")  # the scanner's own identifier wins
    assert token.symbology == symbology
    assert token.value in (payload, "(10)ABC")


@pytest.mark.parametrize(
    ("aim", "symbology"),
    [("]A4", "code39"), ("]Q2", "qr"), ("]Q4", "gs1-qr"), ("]d5", "gs1-datamatrix"),
     ("]C2", "code128"), ("]X0", "aim-X0"), ("]F0", "aim-F0"), ("]E1", "aim-E1")],
)  # fmt: skip
def test_other_aim_identifiers_are_stripped(aim: str, symbology: str) -> None:
    token = norm(f"{aim}hello there")
    assert (token.symbology, token.value) == (symbology, "hello there")


@pytest.mark.parametrize("data", ["]e", "]Eb1234", "]]E0", "x]E0"])
def test_text_that_is_not_an_aim_identifier_is_kept(data: str) -> None:
    token = norm(data)
    assert (token.symbology, token.value) == ("unknown", data)


@pytest.mark.parametrize(
    ("hint", "symbology"),
    [(None, "unknown"), ("", "unknown"), ("keyed", "keyed"), (" NFC ", "nfc"), ("ean8", "ean8")],
)
def test_driver_hint_without_aim(hint: str | None, symbology: str) -> None:
    assert norm("hello there", hint).symbology == symbology


@pytest.mark.parametrize(
    ("data", "error", "value"),
    [
        (b"", "empty scan", ""),
        (b"\r\n", "empty scan", ""),
        (b"   \t", "empty scan", ""),
        (b"]E0  \r\n", "empty scan", ""),
        (b"x" * 513, "scan is 513 characters; the limit is 512", "x" * 513),
        ("é".encode() * 513, "scan is 513 characters; the limit is 512", "é" * 513),
        (b"ab\x07c", "control character 0x07 at position 2", "ab\x07c"),
        (b"\tabc", "control character 0x09 at position 0", "\tabc"),
        (b"ab\r\ncd", "control character 0x0D at position 2", "ab\r\ncd"),
        (b"]C0ab\x1bc", "control character 0x1B at position 2", "ab\x1bc"),
        (b"ab\x7f", "control character 0x7F at position 2", "ab\x7f"),
        ("ab\u0085c".encode(), "control character 0x85 at position 2", "ab\u0085c"),
        (b"abc\xffdef\r\n", "not valid UTF-8 at byte 3", "abc\ufffddef"),
        (b"\xed\xa0\x80", "not valid UTF-8 at byte 0", "\ufffd\ufffd\ufffd"),  # a surrogate
        (b"]Q1\xc3", "not valid UTF-8 at byte 3", "\ufffd"),
    ],
)
def test_framing_rejects(data: bytes, error: str, value: str) -> None:
    token = norm(data)
    assert token == Token(
        kind="unknown", value=value, symbology=token.symbology, valid=False, error=error,
        ais=None, secret=True, rule="framing",
    )  # fmt: skip


def test_the_limit_is_inclusive_and_configurable() -> None:
    assert norm("x" * 512).valid
    short = with_settings(max_length=10)
    assert norm("x" * 10, normaliser=short).valid
    assert norm("x" * 11, normaliser=short).error == "scan is 11 characters; the limit is 10"


def test_gs_is_not_a_control_character_to_reject() -> None:
    token = norm(b"ab\x1dcd")
    assert (token.kind, token.value, token.valid) == ("unknown", "ab\x1dcd", True)


# --- the classification table --------------------------------------------------------------

UUID = "123E4567-E89B-12D3-A456-426614174000"
ROWS = [
    # 1 gift_voucher_token
    ("https://giftlocal.com/redeem/AbC123", None, "gift_voucher_token", "AbC123"),
    ("HTTPS://GiftLocal.COM/g/tok/", None, "gift_voucher_token", "tok"),
    ("https://app.giftlocal.com/v/XYZ?x=1#frag", "qr", "gift_voucher_token", "XYZ"),
    ("http://giftlocal.com.:8080/a//b//", None, "gift_voucher_token", "b"),
    # 2 url
    ("https://evilgiftlocal.com/g/x", None, "url", "https://evilgiftlocal.com/g/x"),
    ("https://giftlocal.com.evil.com/g/x", None, "url", "https://giftlocal.com.evil.com/g/x"),
    ("https://giftlocal.com@evil.com/g/x", None, "url", "https://giftlocal.com@evil.com/g/x"),
    ("https://giftlocal.com/", None, "url", "https://giftlocal.com/"),  # no token in it
    ("https://giftlocal.com?t=1", None, "url", "https://giftlocal.com?t=1"),
    ("http://example.com", "qr", "url", "http://example.com"),
    # 3 gs1
    ("]C10109506000134352\x1d10ABC", None, "gs1", "(01)09506000134352(10)ABC"),
    ("]Q3(01)09506000134352(10)ABC", None, "gs1", "(01)09506000134352(10)ABC"),
    ("]d2\x1d0109506000134352", None, "gs1", "(01)09506000134352"),
    ("]e00109506000134352", None, "gs1", "(01)09506000134352"),
    ("0109506000134352\x1d17250228", "gs1-128", "gs1", "(01)09506000134352(17)250228"),
    # 4 coupon
    ("9811234567891", None, "coupon", "9811234567891"),
    ("]E09828508010106", None, "coupon", "9828508010106"),
    ("9830000000011", "keyed", "coupon", "9830000000011"),
    ("9841234123414", None, "coupon", "9841234123414"),
    ("9912345678909", "ean13", "coupon", "9912345678909"),
    # 5 product_gtin
    ("]E04006381333931", None, "product_gtin", "4006381333931"),
    ("]E496385074", None, "product_gtin", "96385074"),
    ("4006381333931", None, "product_gtin", "4006381333931"),
    ("96385074", None, "product_gtin", "96385074"),
    ("09506000134352", None, "product_gtin", "09506000134352"),
    ("9851234567897", None, "product_gtin", "9851234567897"),  # 985 is not a coupon prefix
    ("96385074", "ean8", "product_gtin", "96385074"),
    # 6 gift_voucher_code
    ("123456789012", None, "gift_voucher_code", "123456789012"),
    ("1234 5678 9012", "keyed", "gift_voucher_code", "123456789012"),
    ("1234-5678-9012", None, "gift_voucher_code", "123456789012"),
    ("]C0123456789012", None, "gift_voucher_code", "123456789012"),
    ("]Q11234 56789012", None, "gift_voucher_code", "123456789012"),
    # 7 loyalty_redemption_code
    ("1234567", None, "loyalty_redemption_code", "1234567"),
    ("]C01234567", None, "loyalty_redemption_code", "1234567"),
    # 8 loyalty_card
    ("1234567890123456", None, "loyalty_card", "1234567890123456"),
    # 9 phone
    ("5551234567", None, "phone", "5551234567"),
    ("(555) 123-4567", None, "phone", "5551234567"),
    ("(555)123-4567", "keyed", "phone", "5551234567"),
    ("555-123-4567", None, "phone", "5551234567"),
    ("555.123.4567", None, "phone", "5551234567"),
    ("555 123 4567", None, "phone", "5551234567"),
    ("+1 555 123 4567", None, "phone", "5551234567"),
    ("+15551234567", None, "phone", "5551234567"),
    ("1-555-123-4567", None, "phone", "5551234567"),
    # 10 email
    ("Jane.Doe@Example.COM", None, "email", "jane.doe@example.com"),
    ("a+b@mail.example.co.uk", "keyed", "email", "a+b@mail.example.co.uk"),
    # 11 loyalty_user_qr
    ("PunchhXPunchh", None, "loyalty_user_qr", "PunchhXPunchh"),
    ("Punchh" + "aB3/=+" * 83 + "xx" + "Punchh", None, "loyalty_user_qr",
     "Punchh" + "aB3/=+" * 83 + "xx" + "Punchh"),
    ("PunchhPunchh", None, "loyalty_user_qr", "PunchhPunchh"),  # as P + 11 letters
    ("P1", None, "loyalty_user_qr", "P1"),
    ("PaBcDeF12345", None, "loyalty_user_qr", "PaBcDeF12345"),
    ("SAB12cd3", None, "loyalty_user_qr", "SAB12cd3"),
    # 12 loyalty_single_scan
    (UUID, None, "loyalty_single_scan", UUID.lower()),
    ("abc123", None, "loyalty_single_scan", "abc123"),
    ("DEADBEEF", None, "loyalty_single_scan", "deadbeef"),
    ("0123456789abcdef0123456789ABCDEF01", None, "loyalty_single_scan",
     "0123456789abcdef0123456789abcdef01"),
    # 13 unknown
    ("hello world", None, "unknown", "hello world"),
    ("ftp://example.com/x", None, "unknown", "ftp://example.com/x"),
    ("https://", None, "unknown", "https://"),
    ("http://[::1/x", None, "unknown", "http://[::1/x"),
    ("https://example.com/a b", None, "unknown", "https://example.com/a b"),
    ("]C09828508010106", None, "unknown", "9828508010106"),  # 13 digits, but Code 128
    ("123456789012", "upca", "unknown", "123456789012"),  # UPC is never a gift code
    ("1234--5678-9012", None, "unknown", "1234--5678-9012"),
    ("12345678901", None, "unknown", "12345678901"),
    ("123 4567", None, "unknown", "123 4567"),
    ("555-1234-567", None, "unknown", "555-1234-567"),
    ("a@b", None, "unknown", "a@b"),
    ("a@b@c.com", None, "unknown", "a@b@c.com"),
    ("a@.com", None, "unknown", "a@.com"),
    ("Punchh-Punch", None, "unknown", "Punchh-Punch"),
    ("P123456789012", None, "unknown", "P123456789012"),
    ("SAB12cd", None, "unknown", "SAB12cd"),
    ("123456", None, "unknown", "123456"),
    ("abcde", None, "unknown", "abcde"),
    ("0123456789abcdef0123456789abcdef012", None, "unknown",
     "0123456789abcdef0123456789abcdef012"),
    ("١٢٣٤٥٦٧", None, "unknown", "١٢٣٤٥٦٧"),  # Arabic-Indic digits are not digits here
]  # fmt: skip


@pytest.mark.parametrize(("data", "hint", "kind", "value"), ROWS)
def test_valid_rows(data: str, hint: str | None, kind: str, value: str) -> None:
    token = norm(data, hint)
    assert (token.kind, token.value) == (kind, value)
    assert (token.valid, token.error) == (True, None)
    assert token.rule == kind


@pytest.mark.parametrize(
    ("data", "hint", "kind", "error"),
    [
        ("]C10109506000134353", None, "gs1", "GS1 check digit of GTIN (01) is 3, expected 2"),
        ("]Q3(02)09506000134351", None, "gs1",
         "GS1 check digit of GTIN of contained items (02) is 1, expected 2"),
        ("]C1049506000134352", None, "gs1", "unknown GS1 AI (04)"),
        ("]d2(99)", None, "gs1", "GS1 AI (99) company internal has no data"),
        ("]e010" + "A" * 21, None, "gs1", "GS1 AI (10) batch/lot has 21 characters; its format"),
        ("hello", "gs1-datamatrix", "gs1", "expected a GS1 AI at position 0, found 'he'"),
        ("0109506000134352\x1d17250231", "gs1-128", "gs1",
         "GS1 AI (17) expiry date: day 31 in date 250231 does not exist"),
        ("]C1\x1d", None, "gs1", "GS1 element string is empty"),
        ("]E04006381333932", None, "product_gtin", "GS1 check digit of EAN-13 is 2, expected 1"),
        ("]E496385075", None, "product_gtin", "GS1 check digit of EAN-8 is 5, expected 4"),
        ("]E0400638133393", None, "product_gtin", "EAN-13 has 12 digits; expected 13"),
        ("123456789012", "ean13", "product_gtin", "EAN-13 has 12 digits; expected 13"),
        ("]E01", None, "product_gtin", "EAN-13 has 1 digits; expected 13"),
        ("9811234567892", None, "product_gtin", "GS1 check digit of EAN-13 is 2, expected 1"),
        ("09506000134353", "keyed", "product_gtin",
         "GS1 check digit of GTIN-14 is 3, expected 2"),
        ("12345678", None, "product_gtin", "GS1 check digit of EAN-8 is 8, expected 0"),
    ],
)  # fmt: skip
def test_invalid_rows(data: str, hint: str | None, kind: str, error: str) -> None:
    token = norm(data, hint)
    assert (token.kind, token.valid, token.rule) == (kind, False, kind)
    assert token.error is not None
    assert token.error.startswith(error)
    assert token.ais is None


def test_punchh_user_qr_is_at_most_512_characters() -> None:
    long = with_settings(max_length=1000)
    assert norm("Punchh" + "x" * 500 + "Punchh", normaliser=long).kind == "loyalty_user_qr"
    assert norm("Punchh" + "x" * 501 + "Punchh", normaliser=long).kind == "unknown"


def test_gs1_token_carries_ais() -> None:
    token = norm("]C10109506000134352\x1d10ABC\x1d")
    assert token.ais == {"01": "09506000134352", "10": "ABC"}
    assert token.symbology == "gs1-128"


def test_gs1_needs_a_gs1_symbology() -> None:
    assert norm("]Q1(01)09506000134352").kind == "unknown"
    assert norm("0109506000134352").kind == "loyalty_card"  # 16 digits and no GS1 identifier


@pytest.mark.parametrize(
    ("data", "secret"),
    [("https://giftlocal.com/g/T", True), ("https://example.com", False),
     ("]C10109506000134352", False), ("9828508010106", False), ("4006381333931", False),
     ("]E04006381333932", False), ("123456789012", True), ("1234567", True),
     ("1234567890123456", True), ("5551234567", True), ("a@b.co", True), ("P1", True),
     ("abc123", True), ("hello world", True), (b"\x00", True)],
)  # fmt: skip
def test_only_public_kinds_are_not_secret(data: str | bytes, secret: bool) -> None:
    assert norm(data).secret is secret


def test_unknown_names_its_rule() -> None:
    assert norm("hello world").rule == "unknown"


# --- settings: order, switching off, custom rules, gift hosts ------------------------------


def test_default_settings() -> None:
    settings = NormaliserSettings()
    assert settings.gift_hosts == ["giftlocal.com"]
    assert (settings.rules, settings.custom, settings.max_length) == (None, [], 512)


def test_gift_hosts_are_configurable_and_normalised() -> None:
    normaliser = with_settings(gift_hosts=[" Gifts.Example.COM. "])
    token = norm("https://shop.gifts.example.com/t/TOK", normaliser=normaliser)
    assert (token.kind, token.value) == ("gift_voucher_token", "TOK")
    assert norm("https://giftlocal.com/t/TOK", normaliser=normaliser).kind == "url"


def test_rules_reorder_and_switch_off() -> None:
    normaliser = with_settings(rules=["phone", "gift_voucher_code"])
    assert norm("5551234567", normaliser=normaliser).kind == "phone"
    assert norm("123456789012", normaliser=normaliser).kind == "gift_voucher_code"
    assert norm("1234567", normaliser=normaliser).kind == "unknown"  # switched off
    assert norm("https://giftlocal.com/g/T", normaliser=normaliser).kind == "unknown"


def test_no_rules_means_everything_is_unknown_but_framing_still_applies() -> None:
    normaliser = with_settings(rules=[])
    assert norm("4006381333931", normaliser=normaliser).kind == "unknown"
    assert norm(b"\x07", normaliser=normaliser).error == "control character 0x07 at position 0"


def test_order_decides_between_overlapping_rules() -> None:
    # 9876543210 is both a phone number and (as 10 digits) nothing else by default.
    normaliser = with_settings(
        custom=[{"name": "staff", "kind": "staff_card", "pattern": r"98[0-9]{8}"}],
        rules=["phone", "staff"],
    )
    assert norm("9876543210", normaliser=normaliser).kind == "phone"


def test_custom_rules_run_first_by_default() -> None:
    normaliser = with_settings(
        custom=[
            {"name": "store-voucher", "kind": "store_voucher", "pattern": r"GV-([0-9]{6})",
             "value_group": 1},
            {"name": "ticket", "kind": "ticket", "pattern": r"(?P<no>[0-9]{12})(?:T)?",
             "value_group": "no", "secret": False},
        ]
    )  # fmt: skip
    voucher = norm("GV-123456\r\n", normaliser=normaliser)
    assert voucher == Token(
        kind="store_voucher", value="123456", symbology="unknown", valid=True, error=None,
        secret=True, rule="store-voucher",
    )  # fmt: skip
    ticket = norm("123456789012", normaliser=normaliser)  # shadows gift_voucher_code
    assert (ticket.kind, ticket.value, ticket.secret, ticket.rule) == (
        "ticket", "123456789012", False, "ticket",
    )  # fmt: skip
    assert norm("GV-123456x", normaliser=normaliser).kind == "unknown"  # whole payload only


def test_custom_rule_left_out_of_rules_is_off() -> None:
    normaliser = with_settings(
        custom=[{"name": "ticket", "kind": "ticket", "pattern": r"[0-9]{12}"}],
        rules=["gift_voucher_code"],
    )
    assert norm("123456789012", normaliser=normaliser).kind == "gift_voucher_code"


def test_custom_rule_after_builtins() -> None:
    normaliser = with_settings(
        custom=[{"name": "ticket", "kind": "ticket", "pattern": r"[0-9]{12}|T[0-9]+"}],
        rules=["gift_voucher_code", "ticket"],
    )
    assert norm("123456789012", normaliser=normaliser).kind == "gift_voucher_code"
    assert norm("T42", normaliser=normaliser).kind == "ticket"


def test_custom_rule_whose_value_group_did_not_match_does_not_claim() -> None:
    normaliser = with_settings(
        custom=[{"name": "opt", "kind": "opt", "pattern": r"X(?:-([0-9]+))?", "value_group": 1}]
    )
    assert norm("X-12", normaliser=normaliser).value == "12"
    assert norm("X", normaliser=normaliser).kind == "unknown"


def test_settings_from_toml() -> None:
    table = tomllib.loads(
        """
        gift_hosts = ["giftlocal.com", "gifts.example.org"]
        rules = ["member", "gift_voucher_token", "gs1", "product_gtin"]
        max_length = 256

        [[custom]]
        name = "member"
        kind = "member_card"
        pattern = 'M(\\d{8})'
        value_group = 1
        secret = true
        """
    )
    normaliser = Normaliser(NormaliserSettings.model_validate(table))
    assert norm("M12345678", normaliser=normaliser).value == "12345678"
    assert norm("https://gifts.example.org/x/T", normaliser=normaliser).value == "T"


def _errors(**settings: object) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        NormaliserSettings.model_validate(settings)
    return [(e["loc"], e["msg"]) for e in caught.value.errors()]


def test_unknown_rule_is_reported_with_the_known_ones() -> None:
    known = (
        "gift_voucher_token, url, gs1, coupon, loyalty_receipt, product_gtin, gift_voucher_code, "
        "loyalty_redemption_code, loyalty_card, phone, email, loyalty_user_qr, "
        "loyalty_single_scan"
    )
    assert _errors(rules=["url", "foo"]) == [(("rules",), f"unknown rule 'foo'; known: {known}")]
    custom = {"name": "mine", "kind": "mine", "pattern": "x"}
    assert _errors(rules=["bar"], custom=[custom]) == [
        (("rules",), f"unknown rule 'bar'; known: {known}, mine")
    ]


@pytest.mark.parametrize(
    ("settings", "loc", "message"),
    [
        ({"rules": ["url", "url"]}, ("rules",), "rule 'url' is listed twice"),
        ({"rules": ["unknown"]}, ("rules",),
         "'unknown' is the fall-through, not a rule; leave it out"),
        ({"gift_hosts": ["https://giftlocal.com/"]}, ("gift_hosts",),
         "'https://giftlocal.com/' is not a host name; write it like giftlocal.com"),
        ({"gift_hosts": [""]}, ("gift_hosts",),
         "'' is not a host name; write it like giftlocal.com"),
        ({"max_length": 0}, ("max_length",), "Input should be greater than or equal to 1"),
        ({"colour": "red"}, ("colour",), "Extra inputs are not permitted"),
        ({"custom": [{"name": "a", "kind": "a", "pattern": "(x"}]}, ("custom", 0, "pattern"),
         "pattern does not compile: missing ), unterminated subpattern at position 0"),
        ({"custom": [{"name": "a", "kind": "a", "pattern": "x{2}(", "value_group": 0}]},
         ("custom", 0, "pattern"),
         "pattern does not compile: missing ), unterminated subpattern at position 4"),
        ({"custom": [{"name": "a", "kind": "a", "pattern": "(x)", "value_group": 2}]},
         ("custom", 0), "value_group 2 does not exist; the pattern has 1 group(s)"),
        ({"custom": [{"name": "a", "kind": "a", "pattern": "(?P<x>x)", "value_group": "y"}]},
         ("custom", 0), "value_group 'y' is not a named group of the pattern (named: x)"),
        ({"custom": [{"name": "a", "kind": "Big", "pattern": "x"}]}, ("custom", 0, "kind"),
         "String should match pattern '^[a-z][a-z0-9_]*$'"),
        ({"custom": [{"name": "a", "kind": "a", "pattern": "x", "extra": 1}]},
         ("custom", 0, "extra"), "Extra inputs are not permitted"),
        ({"custom": [{"name": "url", "kind": "a", "pattern": "x"}]}, ("custom",),
         "custom rule name 'url' is a built-in name"),
        ({"custom": [{"name": "a", "kind": "a", "pattern": "x"},
                     {"name": "a", "kind": "b", "pattern": "y"}]}, ("custom",),
         "custom rule name 'a' is used twice"),
    ],
)  # fmt: skip
def test_settings_errors_are_short_and_located(
    settings: dict[str, object], loc: tuple[int | str, ...], message: str
) -> None:
    assert _errors(**settings) == [(loc, message)]


def test_custom_rule_model_alone() -> None:
    rule = CustomRule(name="a", kind="a", pattern=r"(\d+)", value_group=1)
    assert (rule.secret, rule.value_group) == (True, 1)


# --- JSON form -----------------------------------------------------------------------------


def test_token_json_has_exactly_the_brief_fields() -> None:
    assert token_json(norm("123456789012")) == {
        "kind": "gift_voucher_code", "value": "123456789012", "symbology": "unknown",
        "valid": True, "error": None,
    }  # fmt: skip


def test_token_json_adds_ais_for_gs1_only() -> None:
    assert token_json(norm("]C10109506000134352")) == {
        "kind": "gs1", "value": "(01)09506000134352", "symbology": "gs1-128", "valid": True,
        "error": None, "ais": {"01": "09506000134352"},
    }  # fmt: skip
    assert token_json(norm("]C101"))["ais"] is None
    assert "ais" not in token_json(norm("4006381333931"))


def test_kind_is_a_plain_string_equal_to_the_enum() -> None:
    token = norm("4006381333931")
    assert type(token.kind) is str
    assert token.kind == Kind.PRODUCT_GTIN

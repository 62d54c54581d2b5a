"""GS1 element strings: check digits, the AI table, raw and `(AI)value` parsing, rendering."""

from __future__ import annotations

import pytest

from agent.normalise import gs1
from agent.normalise.gs1 import GS, GS1Error


@pytest.mark.parametrize(
    "number",
    [
        "24012345678905",  # GTIN-14 (gs1-syntax-engine test vectors, research/hardware.md §3.5)
        "2112233789657",  # EAN-13
        "416000336108",  # UPC-A
        "02345680",  # EAN-8
        "036000241457",  # UPC-A, check digit 7
        "4006381333931",  # EAN-13
        "09506000134352",  # GTIN-14 of the GS1 examples
        "106141412345678908",  # SSCC
    ],
)
def test_check_digit_of_known_numbers(number: str) -> None:
    assert gs1.check_digit(number[:-1]) == int(number[-1])
    assert gs1.check_digit_error("GTIN", number) is None


def test_check_digit_error_names_both_digits() -> None:
    assert gs1.check_digit_error("GTIN (01)", "09506000134353") == (
        "GS1 check digit of GTIN (01) is 3, expected 2"
    )


def test_table_covers_retail_ais() -> None:
    wanted = [
        "00", "01", "02", "10", "11", "13", "15", "17", "20", "21", "22", "235", "240", "241",
        "250", "251", "253", "254", "30", "3100", "3105", "3165", "3200", "3695", "37", "3900",
        "3919", "3929", "3939", "400", "401", "402", "403", "410", "414", "417", "420", "421",
        "422", "8003", "8004", "8005", "8008", "8020", "8200", "90", "91", "99",
    ]  # fmt: skip
    assert [ai for ai in wanted if ai not in gs1.AIS] == []
    assert "3106" not in gs1.AIS  # at most 5 decimals for a measure


def test_every_ai_has_the_length_its_prefix_gives() -> None:
    wrong = [
        ai
        for ai in gs1.AIS
        if len(ai) != gs1.AI_LENGTH_BY_PREFIX.get(ai[:2], 2) or not ai.isdigit()
    ]
    assert wrong == []


def test_fixed_lengths_and_formats() -> None:
    assert gs1.AIS["01"].fixed_length == 14
    assert gs1.AIS["01"].predefined
    assert gs1.AIS["10"].fixed_length is None
    assert gs1.AIS["253"].format == "N13+[X..17]"
    assert gs1.AIS["7003"].fixed_length == 10
    assert not gs1.AIS["422"].predefined  # fixed length, yet FNC1 is required after it


@pytest.mark.parametrize(
    ("raw", "ais"),
    [
        ("0109506000134352" + "10ABC", {"01": "09506000134352", "10": "ABC"}),
        (
            "011231231231233310ABC123" + GS + "99TESTING",
            {"01": "12312312312333", "10": "ABC123", "99": "TESTING"},
        ),
        (GS + "0109506000134352", {"01": "09506000134352"}),  # leading FNC1
        ("10ABC" + GS, {"10": "ABC"}),  # trailing FNC1
        ("0109506000134352" + GS + "17250200", {"01": "09506000134352", "17": "250200"}),
        ("00106141412345678908", {"00": "106141412345678908"}),
        ("0109506000134352" + "3103000750", {"01": "09506000134352", "3103": "000750"}),
        ("3922" + "1299" + GS + "422276", {"3922": "1299", "422": "276"}),
        ("393297812345", {"3932": "97812345"}),  # currency 978 + amount
        ("422276" + "10AB", {"422": "276", "10": "AB"}),  # fixed length: read without its GS
        ("2531234567890128" + "ABC", {"253": "1234567890128ABC"}),
        ("2531234567890128", {"253": "1234567890128"}),  # optional part left out
        ("800825010112", {"8008": "25010112"}),
        ("8200https://example.com/p?a=1", {"8200": "https://example.com/p?a=1"}),
        ("10A" + GS + "10A", {"10": "A"}),  # a repeated AI with the same value is harmless
    ],
)
def test_parse_raw(raw: str, ais: dict[str, str]) -> None:
    assert gs1.parse(raw) == ais


@pytest.mark.parametrize(
    ("text", "ais"),
    [
        ("(01)09506000134352(10)ABC", {"01": "09506000134352", "10": "ABC"}),
        ("(10)A\\(B)(21)X", {"10": "A(B)", "21": "X"}),
        ("(3103)000750", {"3103": "000750"}),
    ],
)
def test_parse_bracketed(text: str, ais: dict[str, str]) -> None:
    assert gs1.parse(text) == ais


def test_render_is_the_inverse_of_bracketed_parsing() -> None:
    ais = {"01": "09506000134352", "10": "A(B)", "21": "X"}
    assert gs1.render(ais) == "(01)09506000134352(10)A\\(B)(21)X"
    assert gs1.parse(gs1.render(ais)) == ais


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "GS1 element string is empty"),
        (GS + GS, "GS1 element string is empty"),
        ("049506000134352", "unknown GS1 AI (04)"),
        ("3106000123", "unknown GS1 AI (3106)"),
        ("4300ABC", "unknown GS1 AI (4300)"),
        ("0109506000134353", "GS1 check digit of GTIN (01) is 3, expected 2"),
        ("0209506000134353", "GS1 check digit of GTIN of contained items (02) is 3, expected 2"),
        ("00106141412345678909", "GS1 check digit of SSCC (00) is 9, expected 8"),
        ("01095060001343", "GS1 AI (01) GTIN has 12 characters; its format is N14"),
        ("010950600013435" + GS + "10A", "GS1 AI (01) GTIN has 13 characters; its format is N14"),
        ("10" + "A" * 21, "GS1 AI (10) batch/lot has 21 characters; its format is X..20"),
        ("10AB~C", "GS1 AI (10) batch/lot has '~'; only GS1 characters are allowed there"),
        ("10" + GS + "21X", "GS1 AI (10) batch/lot has no data"),
        ("01ABCDEFGHIJKLMN", "GS1 AI (01) GTIN has 'A'; only digits are allowed there"),
        ("17251301", "GS1 AI (17) expiry date: month 13 in date 251301 is not 01-12"),
        ("17250230", "GS1 AI (17) expiry date: day 30 in date 250230 does not exist"),
        ("700325010124000", "GS1 AI (7003) expiry date and time: time 2400 is not a valid HHMM"),
        ("70032501001200", "GS1 AI (7003) expiry date and time: day 00 in date 250100"),
        ("3910978", "GS1 AI (3910) amount payable with currency has 3 characters; its format"),
        ("253123", "GS1 AI (253) GDTI has 3 characters; its format is N13+[X..17]"),
        ("0109506000134352" + "31", "expected a GS1 AI at position 16, found '31'"),
        ("0109506000134352" + GS + GS + "10A", "expected a GS1 AI at position 17, found '\\x1d1'"),
        ("AB", "expected a GS1 AI at position 0, found 'AB'"),
        ("10A" + GS + "10B", "GS1 AI (10) appears twice with different values"),
        ("(01)09506000134352(10", "expected (AI) at position 18, found '(10'"),
        ("(04)1", "unknown GS1 AI (04)"),
        ("(01)0950600013435", "GS1 AI (01) GTIN has 13 characters"),
        ("(10)A" + GS + "B", "GS1 AI (10) batch/lot has '\\x1d'"),
    ],
)
def test_parse_errors_name_the_ai(text: str, error: str) -> None:
    with pytest.raises(GS1Error) as caught:
        gs1.parse(text)
    assert str(caught.value).startswith(error)


@pytest.mark.parametrize("date", ["240229", "250200", "991231", "000101"])
def test_valid_dates(date: str) -> None:
    assert gs1.parse("17" + date) == {"17": date}


def test_leap_day_only_in_leap_years() -> None:
    with pytest.raises(GS1Error, match="day 29"):
        gs1.parse("17250229")

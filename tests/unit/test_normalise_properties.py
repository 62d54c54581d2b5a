"""Properties of the normaliser that must hold for every input, checked with hypothesis."""

from __future__ import annotations

import datetime
import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.normalise import Kind, Normaliser, NormaliserSettings, escape, gs1, unescape
from agent.normalise.gs1 import AIS, GS, Part

DEFAULT = Normaliser()
# The `(AI)value` form of five long AIs can pass the default 512-character limit.
ROOMY = Normaliser(NormaliserSettings(max_length=4096))
WITH_CUSTOM = Normaliser(
    NormaliserSettings.model_validate(
        {
            "custom": [{"name": "v", "kind": "v", "pattern": r"V(\d+)?", "value_group": 1}],
            "gift_hosts": ["giftlocal.com", "example.org"],
        }
    )
)
CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
CSET39 = "#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ALPHABETS = {"N": "0123456789", "X": CSET82, "Y": CSET39}
DIGITS = "0123456789"


def independent_check_digit(body: str) -> int:
    """GS1 mod-10 written differently from the product: the full number, check digit included,
    weighted 1,3,1,... from the right, must sum to a multiple of 10."""
    for candidate in range(10):
        number = body + str(candidate)
        weighted = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(number[::-1]))
        if weighted % 10 == 0:
            return candidate
    raise AssertionError("unreachable: one candidate always fits")


# --- never raises ------------------------------------------------------------------------

INTERESTING = st.sampled_from(
    ["]C1", "]Q3", "]E0", "]E4", "]d2", "]e0", "]X9", "]", "(", ")", "(01)", "\\(", GS, "\r\n",
     "\t", " ", "-", ".", "@", "/", "http://", "https://giftlocal.com/", "Punchh", "P", "S",
     "\x00", "\x7f", "\u0085", "é", "\ufffd", "01", "10", "17", "3103", "999", "+1"]
)  # fmt: skip
STRUCTURED = st.lists(
    st.one_of(INTERESTING, st.text(alphabet=DIGITS, max_size=16), st.text(max_size=4)),
    max_size=12,
).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass"))
HINTS = st.one_of(
    st.none(),
    st.sampled_from(["gs1-128", "gs1-qr", "ean13", "ean8", "upca", "keyed", "nfc", "qr", ""]),
    st.text(max_size=12),
)
# Any text a driver could hand over, lone surrogates included (as a lax decoder would pass them).
ANY_TEXT = st.text(max_size=700).map(lambda text: text.encode("utf-8", "surrogatepass"))
TINY = Normaliser(NormaliserSettings(max_length=8))


def is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


@settings(max_examples=500, deadline=None)
@given(data=st.one_of(st.binary(max_size=700), STRUCTURED, ANY_TEXT), hint=HINTS)
def test_normalise_never_raises(data: bytes, hint: str | None) -> None:
    for normaliser in (DEFAULT, WITH_CUSTOM, TINY):
        token = normaliser.normalise(data, hint)
        assert isinstance(token.valid, bool)
        assert token.valid is (token.error is None)
        if not token.valid:
            assert isinstance(token.error, str) and token.error
        assert isinstance(token.value, str)
        assert token.symbology
        if token.valid:
            # Framing lets nothing through that a screen or a provider would choke on.
            assert not any(is_control(c) and c != GS for c in token.value), token
            token.value.encode("utf-8")  # raises on a lone surrogate
        if token.ais is not None:
            assert (token.kind, token.valid) == (Kind.GS1, True)
        if token.rule == "framing":
            assert (token.kind, token.valid) == ("unknown", False)


_AIM_PREFIX = re.compile(r"\][A-Za-z][0-9A-Z]")
_LIMITED = {limit: Normaliser(NormaliserSettings(max_length=limit)) for limit in range(1, 65)}


def payload_of(text: str) -> str:
    """What the length limit counts, per its documentation: the scan without terminators,
    surrounding spaces and AIM identifier."""
    payload = text.rstrip(" \r\n\t").lstrip(" ")
    if _AIM_PREFIX.match(payload):
        payload = payload[3:].lstrip(" ")
    return payload


@settings(max_examples=300, deadline=None)
@given(
    limit=st.integers(1, 64),
    text=st.text(
        st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from("0]C1 \r\n")),
        min_size=1,
        max_size=150,
    ),
    hint=HINTS,
)
def test_nothing_longer_than_the_limit_is_valid(limit: int, text: str, hint: str | None) -> None:
    token = _LIMITED[limit].normalise(text.encode(), hint)
    payload = payload_of(text)
    if token.valid:
        assert len(payload) <= limit
    elif len(payload) > limit:
        assert token.error == f"scan is {len(payload)} characters; the limit is {limit}"


@settings(deadline=None)
@given(
    payload=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="]"),
        min_size=1,
        max_size=40,
    ),
    before=st.text(alphabet=" ", max_size=3),
    after=st.text(alphabet=" \r\n\t", max_size=4),
)
def test_terminators_and_spaces_never_change_the_token(
    payload: str, before: str, after: str
) -> None:
    plain = DEFAULT.normalise(payload.encode())
    assert DEFAULT.normalise((before + payload + after).encode()) == plain


# --- GS1 round trip ----------------------------------------------------------------------


@st.composite
def part_value(draw: st.DrawFn, part: Part) -> str:
    if part.linter == "csum":
        body = draw(st.text(DIGITS, min_size=part.max_length - 1, max_size=part.max_length - 1))
        return body + str(independent_check_digit(body))
    if part.linter in ("yymmd0", "yymmdd", "yymmddhh"):
        day = draw(st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)))
        text = day.strftime("%y%m%d")
        if part.linter == "yymmd0" and draw(st.booleans()):
            text = text[:4] + "00"  # day 00: "end of the month"
        if part.linter == "yymmddhh":
            text += f"{draw(st.integers(0, 23)):02d}"
        return text
    if part.linter == "hhmm":
        return draw(st.times()).strftime("%H%M")
    alphabet = ALPHABETS[part.charset]
    return draw(st.text(alphabet, min_size=part.min_length, max_size=part.max_length))


@st.composite
def ai_value(draw: st.DrawFn, ai: str) -> tuple[str, str]:
    value = ""
    for part in AIS[ai].parts:
        if part.optional and not draw(st.booleans()):
            break
        value += draw(part_value(part))
    return ai, value


AI_LISTS = st.lists(st.sampled_from(sorted(AIS)), min_size=1, max_size=5, unique=True).flatmap(
    lambda ais: st.tuples(*(ai_value(ai) for ai in ais))
)


def encode_raw(pairs: tuple[tuple[str, str], ...]) -> str:
    """What a scanner sends: GS after each field except the last and predefined-length ones."""
    out = []
    for i, (ai, value) in enumerate(pairs):
        out.append(ai + value)
        if i < len(pairs) - 1 and not AIS[ai].predefined:
            out.append(GS)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(
    pairs=AI_LISTS,
    prefix=st.sampled_from(["]C1", "]Q3", "]d2", "]e0", "]C1" + GS, ""]),
    trailer=st.sampled_from(["", "\r\n", GS]),
)
def test_gs1_round_trip(pairs: tuple[tuple[str, str], ...], prefix: str, trailer: str) -> None:
    data = (prefix + encode_raw(pairs) + trailer).encode()
    token = ROOMY.normalise(data, None if prefix else "gs1-datamatrix")
    assert token.error is None
    assert token.kind == "gs1"
    assert token.ais is not None
    assert list(token.ais.items()) == list(pairs)
    escaped = [(ai, value.replace("(", "\\(")) for ai, value in pairs]
    assert token.value == "".join(f"({ai}){value}" for ai, value in escaped)
    # the human-readable form parses back to the same AIs
    again = ROOMY.normalise(("]Q3" + token.value).encode())
    assert (again.ais, again.value) == (token.ais, token.value)


@settings(deadline=None)
@given(
    pairs=AI_LISTS,
    keyed=st.sampled_from(["00", "01", "02"]).flatmap(ai_value),
    delta=st.integers(1, 9),
    data=st.data(),
)
def test_gs1_wrong_check_digit_is_reported(
    pairs: tuple[tuple[str, str], ...], keyed: tuple[str, str], delta: int, data: st.DataObject
) -> None:
    ai, value = keyed
    wrong = value[:-1] + str((int(value[-1]) + delta) % 10)
    others = [pair for pair in pairs if pair[0] != ai]
    index = data.draw(st.integers(0, len(others)))
    broken = (*others[:index], (ai, wrong), *others[index:])
    token = ROOMY.normalise(("]C1" + encode_raw(broken)).encode())
    assert (token.kind, token.valid, token.ais) == ("gs1", False, None)
    assert token.error is not None
    assert token.error.startswith("GS1 check digit of ")
    assert f"({ai})" in token.error


# --- check digits ------------------------------------------------------------------------


@given(body=st.text(DIGITS, max_size=20))
def test_check_digit_matches_an_independent_implementation(body: str) -> None:
    assert gs1.check_digit(body) == independent_check_digit(body)


@given(
    body=st.text(DIGITS, min_size=7, max_size=17),
    position=st.integers(min_value=0),
    delta=st.integers(1, 9),
)
def test_any_single_digit_change_is_detected(body: str, position: int, delta: int) -> None:
    number = body + str(gs1.check_digit(body))
    assert gs1.check_digit_error("GTIN", number) is None
    i = position % len(number)
    changed = number[:i] + str((int(number[i]) + delta) % 10) + number[i + 1 :]
    assert gs1.check_digit_error("GTIN", changed) is not None


@given(
    body=st.text(DIGITS, min_size=12, max_size=12),
    position=st.integers(0, 12),
    delta=st.integers(1, 9),
)
def test_ean13_scans_with_a_changed_digit_are_invalid(body: str, position: int, delta: int) -> None:
    number = body + str(independent_check_digit(body))
    good = DEFAULT.normalise(f"]E0{number}".encode())
    assert good.valid
    assert good.kind in ("product_gtin", "coupon")
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    bad = DEFAULT.normalise(f"]E0{changed}".encode())
    assert (bad.kind, bad.valid) == ("product_gtin", False)
    assert bad.error is not None
    assert bad.error.startswith("GS1 check digit of EAN-13")


# --- escapes -----------------------------------------------------------------------------


@given(data=st.binary(max_size=200))
def test_unescape_inverts_escape(data: bytes) -> None:
    line = escape(data)
    assert len(line.splitlines()) <= 1
    assert unescape(line) == data


@given(text=st.text(st.characters(exclude_characters="\\", exclude_categories=["Cs"])))
def test_text_without_backslashes_is_its_utf8(text: str) -> None:
    assert unescape(text) == text.encode()


@given(
    line=st.text(
        st.one_of(
            st.characters(categories=["Cs"]),
            st.sampled_from("\\x1dr"),
            st.characters(),
        )
    )
)
def test_unescape_never_raises(line: str) -> None:
    assert isinstance(unescape(line), bytes)

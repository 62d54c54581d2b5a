"""The wedge decoder: real barcodes typed on each layout, terminators, timeouts, lost events."""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Iterable
from functools import cache

import pytest
from evdev import ecodes as e
from hypothesis import given
from hypothesis import strategies as st

from drivers.keymap import DEAD_KEYS, LAYOUTS, Mod
from drivers.settings import Terminator
from drivers.wedge import WedgeDecoder

Event = tuple[int, int]
GS = "\x1d"
HELD = {Mod.SHIFT: e.KEY_LEFTSHIFT, Mod.ALTGR: e.KEY_RIGHTALT, Mod.CTRL: e.KEY_LEFTCTRL}
TERMINATOR_KEYS = {e.KEY_ENTER, e.KEY_KPENTER}


def tap(keycode: int, *held: int) -> list[Event]:
    """Hold modifiers, press and release the key, release the modifiers."""
    return [(k, 1) for k in held] + [(keycode, 1), (keycode, 0)] + [(k, 0) for k in held]


def feed(decoder: WedgeDecoder, events: Iterable[Event], start: float = 0.0) -> list[bytes]:
    """Feed events 1 ms apart; every scan the decoder completes."""
    scans = []
    for i, (keycode, value) in enumerate(events):
        if (scan := decoder.key(keycode, value, start + i / 1000)) is not None:
            scans.append(scan)
    return scans


@cache
def keystrokes(layout: str, caps: bool = False, numlock: bool = True) -> dict[str, list[Event]]:
    """The inverse of the public table: the fewest keystrokes typing each character, through dead
    keys for accents (dead key + space) and accented letters (dead key + letter)."""
    keys = LAYOUTS[layout]
    locks = (Mod.CAPS if caps else Mod(0)) | (Mod.NUMLOCK if numlock else Mod(0))
    keycodes = sorted({k for k, _ in keys.levels} | set(keys.numpad))
    typed: dict[str, list[Event]] = {}
    dead: dict[str, list[Event]] = {}
    for extra in (Mod(0), Mod.SHIFT, Mod.ALTGR, Mod.SHIFT | Mod.ALTGR):
        for mods in (extra, extra | Mod.CTRL):
            held = [k for mod, k in HELD.items() if mod in mods]
            for keycode in keycodes:
                ch = keys.char(keycode, mods | locks)
                if ch is None or keycode in TERMINATOR_KEYS:
                    continue
                (dead if ch in DEAD_KEYS else typed).setdefault(ch, tap(keycode, *held))
    for mark, events in dead.items():
        typed.setdefault(DEAD_KEYS[mark], events + tap(e.KEY_SPACE))
        for letter in string.ascii_letters:
            if (
                letter in typed
                and len(accented := unicodedata.normalize("NFC", letter + mark)) == 1
            ):
                typed.setdefault(accented, events + typed[letter])
    return typed


def encode(text: str, layout: str, caps: bool = False, numlock: bool = True) -> list[Event]:
    keys = keystrokes(layout, caps, numlock)
    return [event for ch in text for event in keys[ch]]


def scan(layout: str, events: list[Event], capslock: bool = False) -> bytes | None:
    """Type the events, then Enter: what the scan is."""
    decoder = WedgeDecoder(layout, capslock=capslock)
    assert feed(decoder, events) == []
    return decoder.key(e.KEY_ENTER, 1, 1.0)


URL = "https://gift.example.com/v?c=AB-12.3_x&n=45%2F7$+~Z"
GS1 = f"]C1010950600013435310ABC123{GS}21XYZ-/789"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("text", ["036000241457", "ABCdef", URL, GS1, "'#!*(),;:@[]", "a b"])
def test_barcodes_round_trip_on_every_layout(layout: str, text: str) -> None:
    assert scan(layout, encode(text, layout)) == text.encode()


def test_us_letters_digits_and_punctuation_key_by_key() -> None:
    events = tap(e.KEY_A, e.KEY_LEFTSHIFT) + tap(e.KEY_B) + tap(e.KEY_1) + tap(e.KEY_MINUS)
    events += tap(e.KEY_SLASH, e.KEY_RIGHTSHIFT) + tap(e.KEY_5, e.KEY_LEFTSHIFT)
    assert scan("us", events) == b"Ab1-?%"


def test_fr_digits_need_shift_on_the_top_row() -> None:
    digits = [e.KEY_0, e.KEY_6, e.KEY_1, e.KEY_2, e.KEY_3, e.KEY_4]
    shifted = [event for key in digits for event in tap(key, e.KEY_LEFTSHIFT)]
    plain = [event for key in digits for event in tap(key)]
    assert scan("fr", shifted) == b"061234"
    assert scan("fr", plain) == "à-&é\"'".encode()


def test_de_types_z_y_umlauts_and_altgr_symbols() -> None:
    events = tap(e.KEY_Y) + tap(e.KEY_Z) + tap(e.KEY_APOSTROPHE) + tap(e.KEY_Q, e.KEY_RIGHTALT)
    events += tap(e.KEY_7, e.KEY_LEFTSHIFT) + tap(e.KEY_9, e.KEY_RIGHTALT)
    assert scan("de", events) == "zyä@/]".encode()


def test_gb_swaps_at_and_double_quote() -> None:
    events = tap(e.KEY_2, e.KEY_LEFTSHIFT) + tap(e.KEY_APOSTROPHE, e.KEY_LEFTSHIFT)
    events += tap(e.KEY_3, e.KEY_LEFTSHIFT) + tap(e.KEY_BACKSLASH)
    assert scan("gb", events) == '"@£#'.encode()


@pytest.mark.parametrize(
    ("layout", "gs"),
    [
        ("us", tap(e.KEY_RIGHTBRACE, e.KEY_LEFTCTRL)),
        ("gb", tap(e.KEY_RIGHTBRACE, e.KEY_RIGHTCTRL)),
        ("de", tap(e.KEY_9, e.KEY_LEFTCTRL, e.KEY_RIGHTALT)),
        ("fr", tap(e.KEY_MINUS, e.KEY_RIGHTCTRL, e.KEY_RIGHTALT)),
    ],
)
def test_gs1_group_separator_is_ctrl_closing_bracket(layout: str, gs: list[Event]) -> None:
    text = encode("0109506000134352", layout) + gs + encode("10ABC", layout)
    assert scan(layout, text) == b"0109506000134352\x1d10ABC"


def test_ctrl_letters_are_control_characters_and_other_keys_stay() -> None:
    events = tap(e.KEY_M, e.KEY_LEFTCTRL) + tap(e.KEY_1, e.KEY_LEFTCTRL) + tap(e.KEY_A)
    assert scan("us", events) == b"\r1a"


KEYPAD = [e.KEY_KP1, e.KEY_KP2, e.KEY_KP3, e.KEY_KPDOT, e.KEY_KP0]


def test_keypad_digits_with_numlock_on() -> None:
    events = [event for key in KEYPAD for event in tap(key)]
    assert scan("us", events) == b"123.0"
    assert scan("de", events) == b"123,0"


def test_keypad_digits_with_numlock_off_are_cursor_keys_and_counted() -> None:
    decoder = WedgeDecoder("us", numlock=False)
    assert feed(decoder, [event for key in KEYPAD for event in tap(key)] + tap(e.KEY_KPENTER)) == []
    assert decoder.unknown_keys == 5


def test_numlock_key_toggles() -> None:
    events = tap(e.KEY_KP1) + tap(e.KEY_NUMLOCK) + tap(e.KEY_KP2) + tap(e.KEY_NUMLOCK)
    assert scan("us", events + tap(e.KEY_KP3)) == b"13"


def test_capslock_inverts_letters_only() -> None:
    events = tap(e.KEY_A) + tap(e.KEY_B, e.KEY_LEFTSHIFT) + tap(e.KEY_1) + tap(e.KEY_SLASH)
    assert scan("us", events, capslock=True) == b"Ab1/"
    assert scan("fr", tap(e.KEY_2) + tap(e.KEY_2, e.KEY_LEFTSHIFT), capslock=True) == "É2".encode()


def test_capslock_key_toggles() -> None:
    events = tap(e.KEY_A) + tap(e.KEY_CAPSLOCK) + tap(e.KEY_A) + tap(e.KEY_CAPSLOCK)
    assert scan("us", events + tap(e.KEY_A)) == b"aAa"


def test_dead_keys() -> None:
    circumflex, diaeresis = tap(e.KEY_GRAVE), tap(e.KEY_LEFTBRACE, e.KEY_LEFTSHIFT)
    assert scan("de", circumflex + tap(e.KEY_SPACE)) == b"^"
    assert scan("de", circumflex + tap(e.KEY_SPACE) + tap(e.KEY_E)) == b"^e"
    assert scan("de", circumflex + tap(e.KEY_E)) == "ê".encode()
    assert scan("de", circumflex + tap(e.KEY_E, e.KEY_LEFTSHIFT)) == "Ê".encode()
    assert scan("de", circumflex + tap(e.KEY_1)) == b"^1"
    assert scan("de", circumflex + circumflex + tap(e.KEY_SPACE)) == b"^^"
    assert scan("de", tap(e.KEY_EQUAL) + tap(e.KEY_EQUAL, e.KEY_LEFTSHIFT)) == "´`".encode()
    assert scan("de", tap(e.KEY_A) + circumflex) == b"a^"
    assert scan("fr", diaeresis + tap(e.KEY_U)) == "ü".encode()
    assert scan("fr", diaeresis + tap(e.KEY_SPACE)) == "¨".encode()


def test_dead_key_then_control_character() -> None:
    gs = tap(e.KEY_9, e.KEY_LEFTCTRL, e.KEY_RIGHTALT)
    assert scan("de", tap(e.KEY_GRAVE) + gs) == b"^\x1d"


def test_right_alt_on_us_and_left_alt_anywhere_change_nothing() -> None:
    decoder = WedgeDecoder("us")
    events = tap(e.KEY_Q, e.KEY_RIGHTALT) + tap(e.KEY_W, e.KEY_LEFTALT) + tap(e.KEY_ENTER)
    assert feed(decoder, events) == [b"qw"]
    assert decoder.unknown_keys == 0


def test_keys_without_a_character_are_counted_and_skipped() -> None:
    decoder = WedgeDecoder("us")
    events = tap(e.KEY_1) + tap(e.KEY_F1) + tap(e.KEY_HOME) + tap(e.KEY_TAB, e.KEY_LEFTSHIFT)
    assert feed(decoder, events + tap(e.KEY_2) + tap(e.KEY_ENTER)) == [b"12"]
    assert decoder.unknown_keys == 3


def test_autorepeat_is_ignored() -> None:
    events = [(e.KEY_1, 1), (e.KEY_1, 2), (e.KEY_1, 2), (e.KEY_1, 0), (e.KEY_ENTER, 2)]
    assert scan("us", events) == b"1"


def test_utf8_output() -> None:
    assert (
        scan("de", tap(e.KEY_APOSTROPHE) + tap(e.KEY_E, e.KEY_RIGHTALT)) == b"\xc3\xa4\xe2\x82\xac"
    )


@pytest.mark.parametrize(
    ("terminators", "scans"),
    [
        ((Terminator.ENTER, Terminator.KP_ENTER), [b"A\tB", b"C", b"D"]),
        ((Terminator.ENTER,), [b"A\tB", b"C\rD"]),
        ((Terminator.TAB,), [b"A", b"B\rC\rD\r"]),
        ((Terminator.TAB, Terminator.ENTER), [b"A", b"B", b"C\rD"]),
    ],
)
def test_terminators(terminators: tuple[Terminator, ...], scans: list[bytes]) -> None:
    """Tab is data unless it terminates; Enter and keypad Enter not terminating type CR."""
    decoder = WedgeDecoder("us", terminators, inter_key_timeout=None)
    events = encode("A\tB", "us") + tap(e.KEY_ENTER) + encode("C", "us") + tap(e.KEY_KPENTER)
    events += encode("D", "us") + tap(e.KEY_ENTER)
    got = feed(decoder, events)
    if (unterminated := decoder.flush()) is not None:
        got.append(unterminated)
    assert got == scans


def test_terminators_given_as_config_strings() -> None:
    decoder = WedgeDecoder("us", [Terminator("tab")])
    assert feed(decoder, tap(e.KEY_A) + tap(e.KEY_TAB)) == [b"a"]


def test_bare_and_repeated_enter_are_no_scans() -> None:
    decoder = WedgeDecoder("us")
    events = tap(e.KEY_ENTER) + tap(e.KEY_1) + tap(e.KEY_ENTER) + tap(e.KEY_ENTER)
    assert feed(decoder, events + tap(e.KEY_KPENTER)) == [b"1"]


def test_timeout_flush_through_deadline() -> None:
    decoder = WedgeDecoder("us", inter_key_timeout=0.1)
    assert decoder.deadline() is None
    assert feed(decoder, tap(e.KEY_1) + tap(e.KEY_2), start=5.0) == []
    assert decoder.deadline() == pytest.approx(5.003 + 0.1)
    assert decoder.flush() == b"12"
    assert decoder.deadline() is None
    assert decoder.flush() is None


def test_a_key_after_the_deadline_starts_a_new_scan() -> None:
    decoder = WedgeDecoder("us", inter_key_timeout=0.1)
    assert feed(decoder, tap(e.KEY_1), start=5.0) == []
    assert decoder.key(e.KEY_2, 1, 5.2) == b"1"
    assert decoder.key(e.KEY_ENTER, 1, 5.21) == b"2"


def test_a_dangling_dead_key_is_pending_and_flushed_as_its_accent() -> None:
    decoder = WedgeDecoder("de", inter_key_timeout=0.1)
    feed(decoder, tap(e.KEY_GRAVE), start=1.0)
    assert decoder.deadline() == pytest.approx(1.101)
    assert decoder.flush() == b"^"


def test_no_timeout_means_no_deadline() -> None:
    decoder = WedgeDecoder("us", inter_key_timeout=None)
    feed(decoder, tap(e.KEY_1))
    assert decoder.deadline() is None
    assert decoder.key(e.KEY_2, 1, 1e9) is None
    assert decoder.flush() == b"12"


def test_syn_dropped_discards_the_partial_scan_and_releases_modifiers() -> None:
    decoder = WedgeDecoder("us", capslock=False)
    feed(decoder, [(e.KEY_1, 1), (e.KEY_1, 0), (e.KEY_CAPSLOCK, 1), (e.KEY_LEFTSHIFT, 1)])
    decoder.dropped()
    assert decoder.deadline() is None
    assert decoder.flush() is None
    assert feed(decoder, tap(e.KEY_A) + tap(e.KEY_2) + tap(e.KEY_ENTER)) == [b"A2"]


def test_sync_takes_held_modifiers_from_the_device_and_keeps_locks() -> None:
    decoder = WedgeDecoder("us", numlock=True, capslock=True)
    decoder.sync([e.KEY_LEFTSHIFT, e.KEY_A])
    assert feed(decoder, [(e.KEY_B, 1), (e.KEY_LEFTSHIFT, 0), (e.KEY_C, 1)]) == []
    assert decoder.flush() == b"bC"  # Shift held + CapsLock on, then CapsLock alone
    decoder.sync([e.KEY_RIGHTCTRL])
    assert feed(decoder, [(e.KEY_RIGHTBRACE, 1), (e.KEY_RIGHTCTRL, 0), (e.KEY_KP1, 1)]) == []
    assert decoder.flush() == b"\x1d1"  # NumLock kept from the settings


def test_decoders_do_not_share_state() -> None:
    first, second = WedgeDecoder("us"), WedgeDecoder("us")
    feed(first, [(e.KEY_LEFTSHIFT, 1), (e.KEY_CAPSLOCK, 1), (e.KEY_A, 1)])
    assert feed(second, tap(e.KEY_A) + tap(e.KEY_ENTER)) == [b"a"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown keyboard layout 'xx'; known layouts: us, gb, de"):
        WedgeDecoder("xx")
    with pytest.raises(ValueError, match="inter_key_timeout"):
        WedgeDecoder("us", inter_key_timeout=0)


@st.composite
def typed_text(draw: st.DrawFn) -> tuple[str, str, bool, bool]:
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    caps, numlock = draw(st.booleans()), draw(st.booleans())
    alphabet = sorted(keystrokes(layout, caps, numlock))
    return layout, draw(st.text(st.sampled_from(alphabet), min_size=1, max_size=30)), caps, numlock


@given(typed=typed_text(), noise=st.lists(st.integers(0, 10_000), max_size=10))
def test_any_typeable_text_decodes_to_itself(
    typed: tuple[str, str, bool, bool], noise: list[int]
) -> None:
    """Whatever the layout and lock states; keys with no character and autorepeats in between
    change nothing."""
    layout, text, caps, numlock = typed
    events = encode(text, layout, caps, numlock)
    for position in sorted(noise, reverse=True):
        at = position % (len(events) + 1)
        events[at:at] = tap(e.KEY_F1) if position % 2 else [(events[at - 1][0], 2)] if at else []
    decoder = WedgeDecoder(layout, capslock=caps, numlock=numlock, inter_key_timeout=None)
    assert feed(decoder, events + tap(e.KEY_ENTER)) == [text.encode()]
    assert decoder.unknown_keys == sum(1 for p in noise if p % 2)


@given(
    layout=st.sampled_from(sorted(LAYOUTS)),
    events=st.lists(st.tuples(st.integers(0, 767), st.integers(0, 2)), max_size=200),
)
def test_arbitrary_key_events_never_raise(layout: str, events: list[Event]) -> None:
    decoder = WedgeDecoder(layout, inter_key_timeout=0.005)
    for scan_bytes in feed(decoder, events):
        assert scan_bytes
        scan_bytes.decode()
    if (deadline := decoder.deadline()) is not None:
        assert deadline > 0
    decoder.dropped()
    decoder.sync([e.KEY_LEFTSHIFT])
    assert decoder.flush() is None


def test_pending_shows_the_scan_typed_so_far() -> None:
    decoder = WedgeDecoder("us")
    feed(decoder, tap(e.KEY_A) + tap(e.KEY_1))
    assert decoder.pending == "a1"
    feed(decoder, tap(e.KEY_ENTER))
    assert decoder.pending == ""


def test_dead_key_space_of_a_mark_without_spacing_form_does_not_combine_later() -> None:
    """Found by the round-trip property: dot below + space, then A, is '\u0323A', not 'Ạ'."""
    events = encode("\u0323A", "gb")
    assert feed(WedgeDecoder("gb"), events + tap(e.KEY_ENTER)) == ["\u0323A".encode()]

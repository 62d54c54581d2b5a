"""Layout tables: what scanners rely on, key by key (the whole tables are checked against xkb in
test_keymap_xkb.py)."""

from __future__ import annotations

import unicodedata

import pytest
from evdev import ecodes as e

from drivers.keymap import DEAD_KEYS, LAYOUTS, Level, Mod, control

NUM = Mod.NUMLOCK
GS = "\x1d"


def test_layouts() -> None:
    assert sorted(LAYOUTS) == ["de", "fr", "gb", "us"]
    assert [name for name, layout in LAYOUTS.items() if not layout.has_altgr] == ["us"]


@pytest.mark.parametrize(
    ("layout", "keycode", "level", "char"),
    [
        ("us", e.KEY_2, Level.SHIFT, "@"),
        ("us", e.KEY_APOSTROPHE, Level.SHIFT, '"'),
        ("gb", e.KEY_2, Level.SHIFT, '"'),
        ("gb", e.KEY_APOSTROPHE, Level.SHIFT, "@"),
        ("gb", e.KEY_3, Level.SHIFT, "£"),
        ("gb", e.KEY_BACKSLASH, Level.BASE, "#"),
        ("gb", e.KEY_4, Level.ALTGR, "€"),
        ("de", e.KEY_Y, Level.BASE, "z"),
        ("de", e.KEY_Z, Level.SHIFT, "Y"),
        ("de", e.KEY_Q, Level.ALTGR, "@"),
        ("de", e.KEY_7, Level.SHIFT, "/"),
        ("de", e.KEY_9, Level.ALTGR, "]"),
        ("de", e.KEY_MINUS, Level.ALTGR, "\\"),
        ("de", e.KEY_SLASH, Level.BASE, "-"),
        ("de", e.KEY_APOSTROPHE, Level.BASE, "ä"),
        ("de", e.KEY_LEFTBRACE, Level.SHIFT, "Ü"),
        ("fr", e.KEY_1, Level.BASE, "&"),
        ("fr", e.KEY_1, Level.SHIFT, "1"),
        ("fr", e.KEY_0, Level.BASE, "à"),
        ("fr", e.KEY_0, Level.ALTGR, "@"),
        ("fr", e.KEY_Q, Level.BASE, "a"),
        ("fr", e.KEY_SEMICOLON, Level.SHIFT, "M"),
        ("fr", e.KEY_M, Level.SHIFT, "?"),
        ("fr", e.KEY_MINUS, Level.ALTGR, "]"),
        ("fr", e.KEY_SLASH, Level.BASE, "!"),
        ("fr", e.KEY_102ND, Level.SHIFT, ">"),
        ("us", e.KEY_SPACE, Level.BASE, " "),
        ("us", e.KEY_TAB, Level.BASE, "\t"),
    ],
)
def test_keycaps(layout: str, keycode: int, level: Level, char: str) -> None:
    assert LAYOUTS[layout].levels[keycode, level] == char


def test_dead_keys_are_combining_marks_with_a_spacing_form() -> None:
    de, fr = LAYOUTS["de"], LAYOUTS["fr"]
    assert DEAD_KEYS[de.levels[e.KEY_GRAVE, Level.BASE]] == "^"
    assert DEAD_KEYS[de.levels[e.KEY_EQUAL, Level.BASE]] == "´"
    assert DEAD_KEYS[de.levels[e.KEY_EQUAL, Level.SHIFT]] == "`"
    assert DEAD_KEYS[fr.levels[e.KEY_LEFTBRACE, Level.BASE]] == "^"
    assert DEAD_KEYS[fr.levels[e.KEY_LEFTBRACE, Level.SHIFT]] == "¨"
    for layout in LAYOUTS.values():
        for ch in layout.levels.values():
            assert len(ch) == 1
            assert (ch in DEAD_KEYS) == bool(unicodedata.combining(ch))


@pytest.mark.parametrize(
    ("layout", "keycode", "mods", "char"),
    [
        ("us", e.KEY_A, Mod.CAPS, "A"),
        ("us", e.KEY_A, Mod.CAPS | Mod.SHIFT, "a"),
        ("us", e.KEY_1, Mod.CAPS, "1"),
        ("us", e.KEY_1, Mod.CAPS | Mod.SHIFT, "!"),
        ("us", e.KEY_SLASH, Mod.CAPS, "/"),
        ("fr", e.KEY_1, Mod.CAPS, "&"),
        ("fr", e.KEY_2, Mod.CAPS, "É"),
        ("fr", e.KEY_2, Mod.CAPS | Mod.SHIFT, "2"),
        ("de", e.KEY_MINUS, Mod.CAPS, "ẞ"),
        ("de", e.KEY_APOSTROPHE, Mod.CAPS, "Ä"),
        ("gb", e.KEY_T, Mod.CAPS | Mod.ALTGR, "Ŧ"),
    ],
)
def test_capslock_shifts_letters_and_capitalises_the_rest(
    layout: str, keycode: int, mods: Mod, char: str
) -> None:
    assert LAYOUTS[layout].char(keycode, mods) == char


def test_right_alt_on_us_is_alt_and_selects_nothing() -> None:
    us = LAYOUTS["us"]
    assert us.char(e.KEY_Q, Mod.ALTGR) == "q"
    assert us.char(e.KEY_2, Mod.ALTGR | Mod.SHIFT) == "@"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_keypad_digits_need_numlock_and_no_shift(layout: str) -> None:
    keys = LAYOUTS[layout]
    digits = [e.KEY_KP0, e.KEY_KP1, e.KEY_KP2, e.KEY_KP3, e.KEY_KP4]
    digits += [e.KEY_KP5, e.KEY_KP6, e.KEY_KP7, e.KEY_KP8, e.KEY_KP9]
    assert [keys.char(k, NUM) for k in digits] == list("0123456789")
    assert [keys.char(k, Mod(0)) for k in digits] == [None] * 10
    assert [keys.char(k, NUM | Mod.SHIFT) for k in digits] == [None] * 10
    assert keys.char(e.KEY_KPDOT, NUM) == ("," if layout == "de" else ".")
    assert keys.char(e.KEY_KPDOT, Mod(0)) is None
    operators = [e.KEY_KPSLASH, e.KEY_KPASTERISK, e.KEY_KPMINUS, e.KEY_KPPLUS, e.KEY_KPENTER]
    for mods in (Mod(0), NUM):
        assert [keys.char(k, mods) for k in operators] == ["/", "*", "-", "+", "\r"]
    assert keys.numpad[e.KEY_KP7] == "7"


@pytest.mark.parametrize(
    ("char", "ctrl"),
    [
        ("@", "\x00"),
        ("a", "\x01"),
        ("A", "\x01"),
        ("m", "\r"),
        ("[", "\x1b"),
        ("\\", "\x1c"),
        ("]", GS),
        ("^", "\x1e"),
        ("_", "\x1f"),
        ("}", GS),
        (" ", "\x00"),
        ("2", "\x00"),
        ("5", GS),
        ("8", "\x7f"),
        ("/", "\x1f"),
        ("1", "1"),
        ("+", "+"),
        ("é", "é"),
        ("\t", "\t"),
    ],
)
def test_control(char: str, ctrl: str) -> None:
    assert control(char) == ctrl


@pytest.mark.parametrize(
    ("layout", "keycode", "mods"),
    [
        ("us", e.KEY_RIGHTBRACE, Mod.CTRL),
        ("gb", e.KEY_RIGHTBRACE, Mod.CTRL),
        ("de", e.KEY_9, Mod.CTRL | Mod.ALTGR),
        ("fr", e.KEY_MINUS, Mod.CTRL | Mod.ALTGR),
    ],
)
def test_gs_is_ctrl_and_the_key_that_types_a_closing_bracket(
    layout: str, keycode: int, mods: Mod
) -> None:
    assert LAYOUTS[layout].char(keycode, mods) == GS
    assert LAYOUTS[layout].char(keycode, mods | NUM | Mod.CAPS) == GS

"""The keymap tables against libxkbcommon, which implements the real X/Wayland layouts.

Every key of a pc105 keymap is pressed under every combination of Shift, AltGr, Ctrl, CapsLock and
NumLock, in an xkb state driven by the same physical keys a scanner presses, and what xkb types
must be what `keymap` says. Dead keys are checked against X's Compose table, and text typed with the
keys xkb finds for it must come out of the decoder unchanged.

Needs the `xkbcommon` Python package and, from Debian, libxkbcommon0 (libxkbcommon-dev to build the
package), xkb-data (the layouts) and libx11-data (the en_US.UTF-8 Compose table).
"""

from __future__ import annotations

import string
import unicodedata
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xkbcommon import xkb  # type: ignore[import-untyped]

from drivers.keymap import DEAD_KEYS, LAYOUTS, Mod
from drivers.wedge import WedgeDecoder

EVDEV_OFFSET = 8  # xkb keycode = Linux keycode + 8
KEY_LEFTCTRL, KEY_LEFTSHIFT, KEY_CAPSLOCK, KEY_NUMLOCK, KEY_RIGHTALT = 29, 42, 58, 69, 100
KEY_ENTER, KEY_KPENTER, KEY_SPACE = 28, 96, 57
KEYPAD_OPERATORS = {55, 74, 78, 98}  # KEY_KPASTERISK, KEY_KPMINUS, KEY_KPPLUS, KEY_KPSLASH
HELD = {Mod.SHIFT: KEY_LEFTSHIFT, Mod.ALTGR: KEY_RIGHTALT, Mod.CTRL: KEY_LEFTCTRL}
LOCKED = {Mod.CAPS: KEY_CAPSLOCK, Mod.NUMLOCK: KEY_NUMLOCK}
DOWN, UP = xkb.KeyDirection.XKB_KEY_DOWN, xkb.KeyDirection.XKB_KEY_UP
CONTEXT = xkb.Context(no_environment_names=True)  # no XKB_DEFAULT_OPTIONS from the shell

# Dead key + space where we type the accent itself (as Windows does) and X's Compose does not.
SPACING_UNLIKE_X = {
    "dead_acute": ("´", "'"),
    "dead_diaeresis": ("¨", '"'),
    "dead_abovering": ("˚", "°"),
    "dead_belowmacron": ("\u0331", None),
}

Keystroke = tuple[int, Mod]


@cache
def keymap(layout: str) -> Any:
    return CONTEXT.keymap_new_from_names(rules="evdev", model="pc105", layout=layout)


@cache
def compose_table() -> Any:
    return CONTEXT.compose_table_new_from_locale("en_US.UTF-8")


def compose(*keysyms: str) -> str | None:
    state = compose_table().compose_state_new()
    for name in keysyms:
        state.feed(xkb.keysym_from_name(name))
    if state.get_status() != xkb.ComposeStatus.XKB_COMPOSE_COMPOSED:
        return None
    text: str = state.get_utf8()
    return text


def xkb_state(layout: str, mods: Mod) -> Any:
    """An xkb state reached by pressing the keys the scanner would press."""
    state = keymap(layout).state_new()
    for mod, keycode in LOCKED.items():
        if mod in mods:
            state.update_key(keycode + EVDEV_OFFSET, DOWN)
            state.update_key(keycode + EVDEV_OFFSET, UP)
    for mod, keycode in HELD.items():
        if mod in mods:
            state.update_key(keycode + EVDEV_OFFSET, DOWN)
    return state


def keycodes(layout: str) -> range:
    km = keymap(layout)
    return range(max(km.min_keycode() - EVDEV_OFFSET, 0), km.max_keycode() - EVDEV_OFFSET + 1)


@cache
def dead_mark(name: str) -> str:
    """The combining mark a dead keysym stands for, read off what Compose makes of it."""
    for letter in "aoecb":
        decomposed = unicodedata.normalize("NFD", compose(name, letter) or "")
        if decomposed[:1] == letter and len(decomposed) == 2:
            return decomposed[1]
    raise AssertionError(f"Compose composes nothing with {name}")


def xkb_keysym(state: Any, keycode: int) -> str:
    name: str = xkb.keysym_get_name(state.key_get_one_sym(keycode + EVDEV_OFFSET))
    return name


def xkb_char(state: Any, keycode: int, mods: Mod) -> str | None:
    """What xkb types, a dead key as its combining mark."""
    if (name := xkb_keysym(state, keycode)).startswith("dead_"):
        return dead_mark(name)
    if text := state.key_get_string(keycode + EVDEV_OFFSET):
        assert isinstance(text, str)
        return text
    if Mod.CTRL in mods and xkb.keysym_to_string(state.key_get_one_sym(keycode + EVDEV_OFFSET)):
        return "\x00"  # Ctrl made it NUL, which cannot cross xkb's C-string API
    return None


def known_difference(layout: str, keycode: int, mods: Mod, ours: str | None) -> bool:
    """The two places we knowingly part from libxkbcommon 1.5:
    - CapsLock on µ: xkb 1.5's legacy case table gives keysym 0x39c, which has no text; we keep µ.
    - Ctrl+Alt on a keypad operator is a server action in xkb (XF86_Ungrab...). On `us` Right Alt
      is Alt; the decoder does not track Alt, so there we type the operator."""
    if ours == "µ" and Mod.CAPS in mods:
        return True
    return layout == "us" and Mod.CTRL | Mod.ALTGR in mods and keycode in KEYPAD_OPERATORS


@pytest.mark.parametrize("mods", [Mod(m) for m in range(32)], ids=lambda m: f"mods{m.value}")
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_key_types_what_xkb_types(layout: str, mods: Mod) -> None:
    state = xkb_state(layout, mods)
    differences = {
        keycode: (ours, theirs)
        for keycode in keycodes(layout)
        if (ours := LAYOUTS[layout].char(keycode, mods))
        != (theirs := xkb_char(state, keycode, mods))
        and not known_difference(layout, keycode, mods, ours)
    }
    assert differences == {}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_right_alt_is_altgr_where_the_layout_says_so(layout: str) -> None:
    state = keymap(layout).state_new()
    expected = "ISO_Level3_Shift" if LAYOUTS[layout].has_altgr else "Alt_R"
    assert xkb_keysym(state, KEY_RIGHTALT) == expected


@cache
def dead_keys(layout: str) -> dict[str, Keystroke]:
    """Each dead keysym of the layout and the keystroke that types it."""
    found: dict[str, Keystroke] = {}
    for mods in (Mod(0), Mod.SHIFT, Mod.ALTGR, Mod.SHIFT | Mod.ALTGR):
        state = xkb_state(layout, mods | Mod.NUMLOCK)
        for keycode in keycodes(layout):
            if (name := xkb_keysym(state, keycode)).startswith("dead_"):
                found.setdefault(name, (keycode, mods))
    return found


@cache
def xkb_keystrokes(layout: str, caps: bool) -> dict[str, Keystroke]:
    """Every character xkb types on the layout (NumLock on), by its fewest-modifier keystroke;
    Enter and keypad Enter are left out, being terminators."""
    lock = Mod.NUMLOCK | (Mod.CAPS if caps else Mod(0))
    found: dict[str, Keystroke] = {}
    for extra in (Mod(0), Mod.SHIFT, Mod.ALTGR, Mod.SHIFT | Mod.ALTGR):
        for mods in (extra, extra | Mod.CTRL):
            state = xkb_state(layout, mods | lock)
            for keycode in keycodes(layout):
                ch = xkb_char(state, keycode, mods)
                if keycode not in (KEY_ENTER, KEY_KPENTER) and ch and ch not in DEAD_KEYS:
                    found.setdefault(ch, (keycode, mods))
    return found


def press(keystroke: Keystroke) -> list[tuple[int, int]]:
    keycode, mods = keystroke
    held = [k for mod, k in HELD.items() if mod in mods]
    return [(k, 1) for k in held] + [(keycode, 1), (keycode, 0)] + [(k, 0) for k in held]


def decode(layout: str, events: list[tuple[int, int]], caps: bool = False) -> bytes | None:
    decoder = WedgeDecoder(layout, inter_key_timeout=None, capslock=caps)
    for keycode, value in events:
        assert decoder.key(keycode, value, 0.0) is None
    return decoder.key(KEY_ENTER, 1, 0.0)


WITH_DEAD_KEYS = ["de", "fr", "gb"]


@pytest.mark.parametrize("layout", WITH_DEAD_KEYS)
def test_dead_keys_compose_as_x_compose_does(layout: str) -> None:
    """We combine exactly when Unicode has the accented letter, and then agree with X. X also makes
    ^1 into ¹ and the like; we keep `^1`, as that is what a barcode holding "^1" is typed as."""
    keys = xkb_keystrokes(layout, caps=False)
    for name, dead in dead_keys(layout).items():
        mark = dead_mark(name)
        for ch in string.ascii_letters + string.digits:
            decoded = decode(layout, press(dead) + press(keys[ch]))
            if len(unicodedata.normalize("NFC", ch + mark)) == 1:
                assert (composed := compose(name, ch)) is not None
                assert decoded == composed.encode(), (name, ch)
            else:
                assert decoded == (DEAD_KEYS[mark] + ch).encode(), (name, ch)


@pytest.mark.parametrize("layout", WITH_DEAD_KEYS)
def test_dead_key_then_space_types_the_accent(layout: str) -> None:
    for name, dead in dead_keys(layout).items():
        ours, x_gives = SPACING_UNLIKE_X.get(name, (compose(name, "space"),) * 2)
        assert ours is not None
        assert compose(name, "space") == x_gives
        assert decode(layout, press(dead) + press((KEY_SPACE, Mod(0)))) == ours.encode(), name


@pytest.mark.parametrize("caps", [False, True], ids=["caps_off", "caps_on"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@given(data=st.data())
def test_text_typed_with_xkbs_keys_decodes_to_itself(
    layout: str, caps: bool, data: st.DataObject
) -> None:
    keys = xkb_keystrokes(layout, caps)
    text = data.draw(st.text(st.sampled_from(sorted(keys)), min_size=1, max_size=40))
    events = [event for ch in text for event in press(keys[ch])]
    assert decode(layout, events, caps) == text.encode()

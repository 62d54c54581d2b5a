"""Keyboard layouts for wedge scanners: Linux keycode + modifiers → the character xkb would type.

A wedge scanner presses the keys that produce each character on the layout it is configured for,
so the host must read them back with that same layout. The tables below are the pc105 `us`, `gb`,
`de` and `fr` layouts of xkeyboard-config as libxkbcommon resolves them (checked key by key against
libxkbcommon in tests/unit/test_keymap_xkb.py), so the agent needs no X server and no libxkbcommon.

Each layout is drawn as the keycaps read: one line of characters per level (base, Shift, AltGr,
AltGr+Shift) for each physical row, `dead_*` for a dead key (stored as its Unicode combining
mark). How CapsLock, NumLock and Ctrl act on a key follows xkb's rules and is resolved once at
import into a dict, so a keystroke costs one lookup.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType


class Level(enum.IntEnum):
    BASE = 0
    SHIFT = 1
    ALTGR = 2
    ALTGR_SHIFT = 3


class Mod(enum.IntFlag):
    """Modifier and lock state that selects what a key types."""

    SHIFT = 1
    ALTGR = 2
    CAPS = 4
    NUMLOCK = 8
    CTRL = 16


# The combining mark that stands for each dead key, and what the dead key types before a space:
# the accent itself, as on Windows (whose tables scanners follow), or, where Unicode has no spacing
# form, the bare mark as X's Compose gives it.
_DEAD = {
    "dead_grave": ("\u0300", "`"),
    "dead_acute": ("\u0301", "´"),
    "dead_circumflex": ("\u0302", "^"),
    "dead_tilde": ("\u0303", "~"),
    "dead_macron": ("\u0304", "¯"),
    "dead_breve": ("\u0306", "˘"),
    "dead_abovedot": ("\u0307", "˙"),
    "dead_diaeresis": ("\u0308", "¨"),
    "dead_hook": ("\u0309", "\u0309"),
    "dead_abovering": ("\u030a", "˚"),
    "dead_doubleacute": ("\u030b", "˝"),
    "dead_caron": ("\u030c", "ˇ"),
    "dead_horn": ("\u031b", "\u031b"),
    "dead_belowdot": ("\u0323", "\u0323"),
    "dead_cedilla": ("\u0327", "¸"),
    "dead_ogonek": ("\u0328", "˛"),
    "dead_belowmacron": ("\u0331", "\u0331"),
}
DEAD_KEYS: Mapping[str, str] = MappingProxyType(dict(_DEAD.values()))
"""Combining mark of each dead key → the spacing character it types when followed by space."""

# Physical rows as linux/input-event-codes.h numbers, in keycap order.
_ROWS = (
    (41, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13),  # KEY_GRAVE, KEY_1 .. KEY_0, KEY_MINUS, KEY_EQUAL
    (16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27),  # KEY_Q .. KEY_P, KEY_LEFTBRACE, _RIGHTBRACE
    (30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 43),  # KEY_A .. KEY_APOSTROPHE, KEY_BACKSLASH
    (86, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53),  # KEY_102ND, KEY_Z .. KEY_SLASH
)

# Per layout and physical row: one line per level, keys separated by spaces.
_DRAWINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "us": (
        ("` 1 2 3 4 5 6 7 8 9 0 - =", "~ ! @ # $ % ^ & * ( ) _ +"),
        ("q w e r t y u i o p [ ]", "Q W E R T Y U I O P { }"),
        ("a s d f g h j k l ; ' \\", 'A S D F G H J K L : " |'),
        ("< z x c v b n m , . /", "> Z X C V B N M < > ?"),
    ),
    "gb": (
        (
            "` 1 2 3 4 5 6 7 8 9 0 - =",
            '¬ ! " £ $ % ^ & * ( ) _ +',
            "| ¹ ² ³ € ½ ¾ { [ ] } \\ dead_cedilla",
            "| ¡ ⅛ £ ¼ ⅜ ⅝ ⅞ ™ ± ° ¿ dead_ogonek",
        ),
        (
            "q w e r t y u i o p [ ]",
            "Q W E R T Y U I O P { }",
            "@ ſ e ¶ ŧ ← ↓ → ø þ dead_diaeresis dead_tilde",
            "Ω § E ® Ŧ ¥ ↑ ı Ø Þ dead_abovering dead_macron",
        ),
        (
            "a s d f g h j k l ; ' #",
            "A S D F G H J K L : @ ~",
            "æ ß ð đ ŋ ħ dead_hook ĸ ł dead_acute dead_circumflex dead_grave",
            "Æ ẞ Ð ª Ŋ Ħ dead_horn & Ł dead_doubleacute dead_caron dead_breve",
        ),
        (
            "\\ z x c v b n m , . /",
            "| Z X C V B N M < > ?",
            "| « » ¢ „ “ ” µ • · dead_belowdot",
            "¦ < > © ‚ ‘ ’ º × ÷ dead_abovedot",
        ),
    ),
    "de": (
        (
            "dead_circumflex 1 2 3 4 5 6 7 8 9 0 ß dead_acute",
            '° ! " § $ % & / ( ) = ? dead_grave',
            "′ ¹ ² ³ ¼ ½ ¬ { [ ] } \\ dead_cedilla",
            "″ ¡ ⅛ £ ¤ ⅜ ⅝ ⅞ ™ ± ° ¿ dead_ogonek",
        ),
        (
            "q w e r t z u i o p ü +",
            "Q W E R T Z U I O P Ü *",
            "@ ſ € ¶ ŧ ← ↓ → ø þ dead_diaeresis ~",
            "Ω § € ® Ŧ ¥ ↑ ı Ø Þ dead_abovering ¯",
        ),
        (
            "a s d f g h j k l ö ä #",
            "A S D F G H J K L Ö Ä '",
            "æ ſ ð đ ŋ ħ dead_belowdot ĸ ł dead_doubleacute dead_circumflex ’",
            "Æ ẞ Ð ª Ŋ Ħ dead_abovedot & Ł dead_belowdot dead_caron dead_breve",
        ),
        (
            "< y x c v b n m , . -",
            "> Y X C V B N M ; : _",
            "| » « ¢ „ “ ” µ · … –",
            "dead_belowmacron › ‹ © ‚ ‘ ’ º × ÷ —",
        ),
    ),
    "fr": (
        (
            "² & é \" ' ( - è _ ç à ) =",
            "~ 1 2 3 4 5 6 7 8 9 0 ° +",
            "¬ ¹ ~ # { [ | ` \\ ^ @ ] }",
            "¬ ¡ ⅛ £ $ ⅜ ⅝ ⅞ ™ ± ° ¿ dead_ogonek",
        ),
        (
            "a z e r t y u i o p dead_circumflex $",
            "A Z E R T Y U I O P dead_diaeresis £",
            "æ « € ¶ ŧ ← ↓ → ø þ dead_diaeresis ¤",
            "Æ < ¢ ® Ŧ ¥ ↑ ı Ø Þ dead_abovering dead_macron",
        ),
        (
            "q s d f g h j k l m ù *",
            "Q S D F G H J K L M % µ",
            "@ ß ð đ ŋ ħ dead_hook ĸ ł µ dead_circumflex dead_grave",
            "Ω ẞ Ð ª Ŋ Ħ dead_horn & Ł º dead_caron dead_breve",
        ),
        (
            "< w x c v b n , ; : !",
            "> W X C V B N ? . / §",
            "| ł » ¢ „ “ ” dead_acute • · dead_belowdot",
            "¦ Ł > © ‚ ‘ ’ dead_doubleacute × ÷ dead_abovedot",
        ),
    ),
}

# Keys every layout shares. One character: the same at every level; two: base and Shift.
_COMMON: dict[int, tuple[str | None, ...]] = {
    1: ("\x1b",),  # KEY_ESC
    14: ("\b",),  # KEY_BACKSPACE
    15: ("\t", None),  # KEY_TAB (Shift+Tab is ISO_Left_Tab, which types nothing)
    28: ("\r",),  # KEY_ENTER
    55: ("*",),  # KEY_KPASTERISK
    57: (" ",),  # KEY_SPACE
    74: ("-",),  # KEY_KPMINUS
    78: ("+",),  # KEY_KPPLUS
    96: ("\r",),  # KEY_KPENTER
    98: ("/",),  # KEY_KPSLASH
    101: ("\n",),  # KEY_LINEFEED
    111: ("\x7f",),  # KEY_DELETE
    117: ("=",),  # KEY_KPEQUAL
    118: ("±",),  # KEY_KPPLUSMINUS
    121: (".",),  # KEY_KPCOMMA (KP_Decimal in xkb's evdev map, on every layout here)
    179: ("(",),  # KEY_KPLEFTPAREN
    180: (")",),  # KEY_KPRIGHTPAREN
    434: ("$",),  # KEY_DOLLAR
    435: ("€",),  # KEY_EURO
}
# The keypad operators' xkb type (CTRL+ALT) consumes Ctrl, so Ctrl leaves them as they are.
_CTRL_CONSUMED = frozenset({55, 74, 78, 98})

# Keypad keys that type only with NumLock on (and Shift up); off, they are cursor keys.
_NUMPAD = {71: "7", 72: "8", 73: "9", 75: "4", 76: "5", 77: "6", 79: "1", 80: "2", 81: "3", 82: "0"}
_KPDOT = 83  # KEY_KPDOT: the decimal separator of the layout's keypad
_DECIMAL = {"us": ".", "gb": ".", "de": ",", "fr": "."}


def control(ch: str) -> str:
    """What Ctrl makes of a character, as xkb (and X before it) does: GS (0x1D) is Ctrl+]."""
    if "@" <= ch <= "~" or ch == " ":
        return chr(ord(ch) & 0x1F)
    if ch == "2":
        return "\x00"
    if "3" <= ch <= "7":
        return chr(ord(ch) - ord("3") + 0x1B)
    if ch == "8":
        return "\x7f"
    if ch == "/":
        return "\x1f"
    return ch


# Where xkb's case mapping differs from Unicode's single-character one: de's CapsLock gives ẞ for ß,
# and xkb leaves ı and µ as they are (1.5 turns µ into an invalid keysym; we keep µ).
_CAPITALS = {"ß": "ẞ", "ı": "ı", "µ": "µ"}


def _capital(ch: str) -> str:
    """CapsLock on a key that is not a letter pair: the character's capital, if it has one."""
    if ch in _CAPITALS:
        return _CAPITALS[ch]
    upper = ch.upper()
    return upper if len(upper) == 1 else ch


def _resolve(
    levels: tuple[str | None, ...], shift: bool, third: bool, caps: bool, ctrl: bool
) -> str | None:
    """xkb's key types: CapsLock shifts a lower/upper letter pair and capitalises anything else."""
    if len(levels) == 1:
        lower = upper = levels[0]
    else:
        lower, upper = levels[2:4] if third and len(levels) == 4 else levels[0:2]
    letter_pair = lower is not None and upper is not None and lower.islower() and upper.isupper()
    ch = upper if shift != (caps and letter_pair) else lower
    if ch is None:
        return None
    if caps and not letter_pair:
        ch = _capital(ch)
    return control(ch) if ctrl else ch


def _char(symbol: str) -> str:
    return _DEAD[symbol][0] if symbol.startswith("dead_") else symbol


def _keys(drawing: tuple[tuple[str, ...], ...]) -> Iterator[tuple[int, tuple[str | None, ...]]]:
    """Turn a layout's drawing into (keycode, levels) pairs."""
    for keycodes, lines in zip(_ROWS, drawing, strict=True):
        columns = [line.split() for line in lines]
        for i, keycode in enumerate(keycodes):
            yield keycode, tuple(_char(column[i]) for column in columns)


@dataclass(frozen=True, slots=True)
class Layout:
    """One layout: its keycaps, and what every key types in every modifier and lock state."""

    name: str
    has_altgr: bool
    """False for `us`, whose Right Alt is a plain Alt that does not change the level."""
    levels: Mapping[tuple[int, Level], str]
    """The keycaps: what each key types at each level, dead keys as their combining mark."""
    numpad: Mapping[int, str]
    """Keypad keys that type only with NumLock on and Shift up."""
    _chars: Mapping[tuple[int, int], str]

    def char(self, keycode: int, mods: Mod) -> str | None:
        """What the key types under these modifiers and locks; None for a key that types nothing."""
        return self._chars.get((keycode, mods))


def _layout(name: str) -> Layout:
    drawing = _DRAWINGS[name]
    has_altgr = len(drawing[0]) == 4
    keys = {**_COMMON, **dict(_keys(drawing))}
    numpad = {**_NUMPAD, _KPDOT: _DECIMAL[name]}
    chars: dict[tuple[int, int], str] = {}
    for mods in range(32):
        shift, altgr, caps, numlock, ctrl = (bool(mods & flag.value) for flag in Mod)
        for keycode, symbols in keys.items():
            control_too = ctrl and keycode not in _CTRL_CONSUMED
            if (ch := _resolve(symbols, shift, has_altgr and altgr, caps, control_too)) is not None:
                chars[keycode, mods] = ch
        if numlock and not shift:
            for keycode, digit in numpad.items():
                chars[keycode, mods] = control(digit) if ctrl else digit
    levels = {
        (keycode, level): ch
        for keycode, symbols in keys.items()
        for level in Level
        if level < len(symbols) and (ch := symbols[level]) is not None
    }
    return Layout(
        name, has_altgr, MappingProxyType(levels), MappingProxyType(numpad), MappingProxyType(chars)
    )


LAYOUTS: Mapping[str, Layout] = MappingProxyType({name: _layout(name) for name in _DRAWINGS})

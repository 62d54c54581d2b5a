"""A keyboard-wedge scanner's keystrokes → scans: modifiers, locks, dead keys, terminators.

One decoder per input device, fed every EV_KEY event of it. Characters come from `keymap` for the
layout the scanner is configured to type in; a scan ends on a terminator key or, for scanners that
send none, after `inter_key_timeout` seconds of silence (the driver calls `flush` at `deadline`).

Dead keys behave as on the Windows layouts scanners are programmed against: followed by a space
they type the accent itself (`^`, `´`, `` ` ``, `¨`...), followed by a letter they combine with it
when Unicode has that letter (`^` `e` → `ê`), and followed by anything else (or the end of the
scan) they type the accent and then that key, so no keystroke is lost or turned into another.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from drivers.keymap import DEAD_KEYS, LAYOUTS, Mod
from drivers.settings import Terminator

KEY_LEFTCTRL = 29
KEY_LEFTSHIFT = 42
KEY_RIGHTSHIFT = 54
KEY_LEFTALT = 56
KEY_CAPSLOCK = 58
KEY_NUMLOCK = 69
KEY_RIGHTCTRL = 97
KEY_RIGHTALT = 100
KEY_LEFTMETA = 125
KEY_RIGHTMETA = 126

DOWN, UP = 1, 0

# Alt and Meta select no level on these layouts (nor does Right Alt on `us`): silent, not unknown.
_SILENT = frozenset({KEY_LEFTALT, KEY_RIGHTALT, KEY_LEFTMETA, KEY_RIGHTMETA})


_TERMINATOR_KEYS = {Terminator.ENTER: 28, Terminator.KP_ENTER: 96, Terminator.TAB: 15}


class WedgeDecoder:
    """Assembles one device's keystrokes into scans (UTF-8 bytes, terminator not included)."""

    def __init__(
        self,
        layout: str = "us",
        terminators: Iterable[Terminator] = (Terminator.ENTER, Terminator.KP_ENTER),
        inter_key_timeout: float | None = 0.1,
        numlock: bool = True,
        capslock: bool = False,
    ) -> None:
        if layout not in LAYOUTS:
            known = ", ".join(LAYOUTS)
            raise ValueError(f"unknown keyboard layout {layout!r}; known layouts: {known}")
        if inter_key_timeout is not None and not inter_key_timeout > 0:
            raise ValueError("inter_key_timeout must be positive seconds, or None for no timeout")
        self._layout = LAYOUTS[layout]
        self._terminators = frozenset(_TERMINATOR_KEYS[Terminator(t)] for t in terminators)
        self._timeout = inter_key_timeout
        self._modifiers = {
            KEY_LEFTSHIFT: Mod.SHIFT,
            KEY_RIGHTSHIFT: Mod.SHIFT,
            KEY_LEFTCTRL: Mod.CTRL,
            KEY_RIGHTCTRL: Mod.CTRL,
        }
        if self._layout.has_altgr:
            self._modifiers[KEY_RIGHTALT] = Mod.ALTGR
        self._held: set[int] = set()
        self._locks = (Mod.NUMLOCK if numlock else Mod(0)) | (Mod.CAPS if capslock else Mod(0))
        self._text: list[str] = []
        self._dead: str | None = None
        self._last = 0.0
        self.unknown_keys = 0

    def key(self, keycode: int, value: int, timestamp: float) -> bytes | None:
        """Feed one EV_KEY event; returns a completed scan, else None."""
        if value not in (DOWN, UP):
            return None  # autorepeat: a scanner never means a held key
        done = self.flush() if self._expired(timestamp) else None
        self._last = timestamp
        if keycode in self._modifiers:
            if value == DOWN:
                self._held.add(keycode)
            else:
                self._held.discard(keycode)
        elif value == UP or keycode in _SILENT:
            pass
        elif keycode == KEY_CAPSLOCK:
            self._locks ^= Mod.CAPS
        elif keycode == KEY_NUMLOCK:
            self._locks ^= Mod.NUMLOCK
        elif keycode in self._terminators:
            return done or self.flush()
        elif (ch := self._layout.char(keycode, self._mods())) is None:
            self.unknown_keys += 1
        else:
            self._type(ch)
        return done

    def deadline(self) -> float | None:
        """When the pending partial scan is complete for lack of further keys; None if no timer."""
        if self._timeout is None or not self._pending():
            return None
        return self._last + self._timeout

    def flush(self) -> bytes | None:
        """Take the pending partial scan, a dangling dead key typed as its accent."""
        if self._dead is not None:
            self._text.append(DEAD_KEYS[self._dead])
            self._dead = None
        text = "".join(self._text)
        self._text.clear()
        return text.encode() if text else None

    def dropped(self) -> None:
        """The kernel lost events: the partial scan is unreliable and key releases may be gone."""
        self._text.clear()
        self._dead = None
        self._held.clear()

    def sync(self, pressed: Iterable[int]) -> None:
        """Take held modifiers from evdev `active_keys()` (after SYN_DROPPED lost releases).

        Lock states stay as tracked: a grabbed scanner's LEDs show the console's NumLock and
        CapsLock, not what the scanner pressed, so they are no evidence for decoding it.
        """
        self._held = {k for k in pressed if k in self._modifiers}

    @property
    def pending(self) -> str:
        """The scan typed so far (for `lane-agent diag monitor`, which shows it key by key)."""
        return "".join(self._text)

    def _pending(self) -> bool:
        return bool(self._text) or self._dead is not None

    def _expired(self, timestamp: float) -> bool:
        """A key after the deadline starts a new scan even if the driver has not flushed yet."""
        deadline = self.deadline()
        return deadline is not None and timestamp >= deadline

    def _mods(self) -> Mod:
        mods = self._locks
        for keycode in self._held:
            mods |= self._modifiers[keycode]
        return mods

    def _type(self, ch: str) -> None:
        if self._dead is not None:
            accent, self._dead = self._dead, None
            if ch == " ":
                # The accent itself; for marks with no spacing form that is the bare mark,
                # which must not turn into a dead key again.
                self._text.append(DEAD_KEYS[accent])
                return
            combined = unicodedata.normalize("NFC", ch + accent)
            if ch not in DEAD_KEYS and len(combined) == 1:
                self._text.append(combined)
                return
            self._text.append(DEAD_KEYS[accent])
        if ch in DEAD_KEYS:
            self._dead = ch
        else:
            self._text.append(ch)

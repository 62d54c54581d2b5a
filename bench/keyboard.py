"""A keyboard-wedge scanner on /dev/uinput (the test VM's), typing digits at a chosen pace.

The hardware tier's `UInputKeyboard` makes the device; typing is done here so the bench knows
the instant it writes the terminator: `type_scan` returns monotonic_ns taken just before the
Enter key-down report is written. Each key is a press report then a release report, one
`interval` apart, as a USB keyboard sends them; a program that completes a scan on the release
pays that one interval, which is part of what it costs.
"""

from __future__ import annotations

import os
import struct
import time

from evdev import ecodes

from bench.common import now_ns
from tests.hardware.gadgets import UInputKeyboard

DIGIT_KEYS = {d: ecodes.ecodes[f"KEY_{d}"] for d in "0123456789"}
EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit Linux; the kernel stamps the time
# lane-agent ends a scan after 0.1 s without a key (its inter_key_timeout): a writer that
# stalls that long inside a scan splits it, which is the bench's fault, so it is counted.
STALL = 0.1
CATCH_UP = 0.005
NAME = "Bench Barcode Scanner"
VENDOR, PRODUCT = 0x0C2E, 0x0BE0


class Scanner:
    def __init__(self) -> None:
        self.keyboard = UInputKeyboard(NAME, VENDOR, PRODUCT)
        self.path = self.keyboard.path
        self._due = 0.0
        self._last = 0.0
        self.stalls = 0  # pauses inside a scan longer than STALL (the bench's, not the daemon's)
        keys = [*DIGIT_KEYS.values(), ecodes.KEY_ENTER]
        self._packed = {
            (code, value): EVENT.pack(0, 0, ecodes.EV_KEY, code, value)
            + EVENT.pack(0, 0, ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
            for code in keys
            for value in (0, 1)
        }

    @property
    def usb_id(self) -> str:
        return f"{VENDOR:04x}:{PRODUCT:04x}"

    def _report(self, code: int, value: int, interval: float) -> None:
        # One write per report (the key event and its SYN_REPORT together), as the kernel gets
        # them from a USB keyboard: two python-evdev calls cost milliseconds under emulation.
        os.write(self.keyboard.ui.fd, self._packed[code, value])
        written = time.monotonic()
        if self._last and written - self._last > STALL:
            self.stalls += 1
        self._last = written
        self._keep_schedule(interval)

    def _keep_schedule(self, step: float) -> None:
        """Sleep until the next report is due. A writer that fell behind catches up by at most
        CATCH_UP (a few reports back to back), never with a burst of everything it missed: a
        stall of the emulated machine must not turn into a flood no keyboard sends."""
        self._due += step
        wait = self._due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -CATCH_UP:
            self._due = time.monotonic() - CATCH_UP

    def type_scan(self, digits: str, interval: float, *, keep_pace: bool = False) -> int:
        """Type `digits` then Enter; returns one interval after the Enter release is written.

        Reports are paced against an absolute schedule, so a sleep that overshoots (an emulated
        CPU's timers are coarse) is made up by the next few reports; where the writer cannot
        keep up at all it types flat out. `keep_pace` continues the previous scan's schedule (back
        to back scans); otherwise the schedule starts now."""
        now = time.monotonic()
        if not keep_pace or self._due < now - 0.05:
            self._due = now
        self._last = 0.0
        for char in digits:
            code = DIGIT_KEYS[char]
            self._report(code, 1, interval)
            self._report(code, 0, interval)
        sent = now_ns()
        self._report(ecodes.KEY_ENTER, 1, interval)
        self._report(ecodes.KEY_ENTER, 0, interval)
        return sent

    def pause(self, seconds: float) -> None:
        """The gap between two scans, on the same schedule as the keys."""
        self._keep_schedule(seconds)

    def close(self) -> None:
        self.keyboard.close()

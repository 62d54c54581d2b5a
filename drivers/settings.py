"""The settings model of every driver's `[devices.<name>]` table, and which class reads each
`type`, kept apart from the drivers so that reading a config imports no evdev, pyserial, pyusb or
nfcpy: the agent imports a driver's module only when a device of its type is configured.
"""

from __future__ import annotations

import enum
import importlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from drivers.framing import Framing
from drivers.hidpos_report import HONEYWELL, LAYOUTS

DRIVERS: dict[str, str] = {
    "evdev": "drivers.keyboard:KeyboardScanner",
    "serial": "drivers.serial_port:SerialScanner",
    "hidpos": "drivers.hidpos:HidPosScanner",
    "nfc": "drivers.nfc_reader:NfcReader",
}
"""`[devices.<name>] type` → the driver class, built as `Class(device_id, settings)`."""


class Terminator(enum.StrEnum):
    """The key that ends a scan typed by a keyboard-wedge scanner."""

    ENTER = "enter"
    KP_ENTER = "kp_enter"
    TAB = "tab"


def driver_class(device_type: str) -> Any:
    """The driver class for `device_type`, importing its module now (and only now)."""
    module, _, name = DRIVERS[device_type].partition(":")
    return getattr(importlib.import_module(module), name)


USB_ID = r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$"


class KeyboardSettings(BaseModel):
    """`[devices.NAME]` with `type = "evdev"`; give at least one of path, usb_id, name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["evdev"]
    path: Path | None = Field(None, description="e.g. /dev/input/by-id/usb-Honeywell_...-event-kbd")
    usb_id: Annotated[str, Field(pattern=USB_ID)] | None = Field(
        None, description="vendor:product in hex, e.g. 0c2e:0b61"
    )
    name: str | None = Field(None, description="device name pattern, e.g. '*Barcode*'")
    layout: str = Field("us", description="keyboard layout the scanner types in: us, gb, de, fr")
    terminators: tuple[Terminator, ...] = (Terminator.ENTER, Terminator.KP_ENTER)
    inter_key_timeout: float = Field(
        0.1,
        ge=0,
        le=10,
        description="seconds of silence that end a scan without terminator; 0: never",
    )
    grab: bool = Field(True, description="keep keystrokes from reaching the console")
    numlock: bool = Field(True, description="NumLock state assumed for keypad digits")

    @model_validator(mode="after")
    def _selects_something(self) -> KeyboardSettings:
        if self.path is None and self.usb_id is None and self.name is None:
            raise ValueError("give path, usb_id or name to select the scanner")
        return self


def _stopbits(value: float) -> float:
    # Literal[1, 1.5, 2] would say it better, but typing allows no float in a Literal.
    if value not in (1, 1.5, 2):
        raise ValueError("must be 1, 1.5 or 2")
    return value


class SerialSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["serial"]
    port: str = Field(description="device path, preferably /dev/serial/by-id/...")
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: Annotated[float, AfterValidator(_stopbits)] = 1
    framing: Framing = Field(Framing.ANY_EOL, description="how the scanner ends each scan")
    symbology: str | None = Field(None, description="symbology of scans without an AIM prefix")


def _usb_id(value: object) -> object:
    """Vendor and product ids as TOML integers (`0x0c2e`) or hex strings (`"0c2e"`, as lsusb)."""
    if isinstance(value, str):
        try:
            return int(value, 16)
        except ValueError:
            raise ValueError(f"not a hexadecimal USB id: {value!r}") from None
    return value


def _layout(name: str) -> str:
    if name not in LAYOUTS:
        raise ValueError(f"unknown report layout {name!r}; known: {', '.join(LAYOUTS)}")
    return name


UsbId = Annotated[int, BeforeValidator(_usb_id), Field(ge=0, le=0xFFFF)]


class HidPosSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["hidpos"]
    vendor_id: UsbId | None = None
    product_id: UsbId | None = None
    serial: str | None = Field(None, description="USB serial number, to tell two scanners apart")
    layout: Annotated[str, AfterValidator(_layout)] = Field(
        HONEYWELL.name, description="input report layout (drivers/hidpos_report.py LAYOUTS)"
    )


PATH_FORMS = (
    "usb, usb:<vendor>:<product>, usb:<bus>:<device>, tty:<port>:<driver>, "
    "com:<port>:<driver> or udp:<host>:<port>"
)

Target = Literal["106A", "106B", "212F", "424F"]


class NfcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["nfc"]
    path: str = Field(
        "usb",
        description="nfcpy device path: usb (first reader), usb:054c:06c1, usb:001:004, "
        "tty:USB0:pn532, udp:localhost:54321 (nfcpy's simulator)",
    )
    targets: list[Target] = Field(
        ["106A", "106B", "212F"],
        min_length=1,
        description="technologies to poll: 106A (NTAG, MIFARE, Type 4A), 106B, 212F/424F (FeliCa)",
    )
    debounce: float = Field(
        1.0,
        ge=0,
        le=10,
        description="seconds a tag must stay away before its removal is reported; the same tag "
        "back sooner continues its presentation and is not read again",
    )
    beep: bool = Field(False, description="beep or flash the reader on a read, when it can")

    @field_validator("path")
    @classmethod
    def _known_path(cls, value: str) -> str:
        if value.split(":", 1)[0] not in ("usb", "tty", "com", "udp"):
            raise ValueError(f"must be one of {PATH_FORMS}")
        return value

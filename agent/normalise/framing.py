"""Framing (brief §5): terminators, the AIM symbology identifier, and what is rejected outright.

Framing runs before any classification rule, so a rule only ever sees valid UTF-8 of a bounded
length, free of control characters other than GS (the GS1 FNC1 separator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ISO/IEC 15424 identifiers: `]` + code character + modifier. The brief's table, plus the other
# modifiers of the same symbologies (check digit options, ECI, FNC1 in second position), which
# keep the base symbology; the GS1 variants are the FNC1-in-first-position ones.
AIM_SYMBOLOGIES: dict[str, str] = {
    "E0": "ean13",
    "E4": "ean8",
    "C0": "code128",
    "C1": "gs1-128",
    "C2": "code128",
    "C4": "code128",
    "Q0": "qr",
    "Q1": "qr",
    "Q2": "qr",
    "Q3": "gs1-qr",
    "Q4": "gs1-qr",
    "Q5": "qr",
    "Q6": "qr",
    "d1": "datamatrix",
    "d2": "gs1-datamatrix",
    "d3": "datamatrix",
    "d4": "datamatrix",
    "d5": "gs1-datamatrix",
    "d6": "datamatrix",
    "e0": "gs1-databar",
    **{f"A{m}": "code39" for m in "01234567"},
    "I0": "itf",
    "I1": "itf",
    "I3": "itf",
    "L0": "pdf417",
    "L1": "pdf417",
    "L2": "pdf417",
    "z0": "aztec",
}

_AIM = re.compile(r"\]([A-Za-z][0-9A-Z])")
_TERMINATORS = " \r\n\t"
# C0 controls except GS (0x1D), DEL, and the C1 controls.
_CONTROL = re.compile(r"[\x00-\x1c\x1e\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True)
class Framed:
    """The scan's payload and symbology; `error` is set when framing rejects the scan."""

    text: str
    symbology: str
    error: str | None = None


def aim_symbology(identifier: str) -> str:
    """Symbology name of an AIM identifier without its `]`, e.g. `C1` -> `gs1-128`.

    An identifier not in the table (an EAN add-on `E1`, a Codabar `F0`, a vendor code `X0`) is
    still stripped, and reported as `aim-` + the identifier (`aim-F0`), so that the payload is clean
    and the symbology stays traceable without guessing.
    """
    return AIM_SYMBOLOGIES.get(identifier, f"aim-{identifier}")


def frame(data: bytes, symbology_hint: str | None, max_length: int) -> Framed:
    """Strip terminators, surrounding spaces and an AIM prefix; reject what no rule should see.

    The AIM prefix wins over the driver's hint; without either the symbology is `unknown`.
    Positions in errors count from 0: bytes of the raw scan for UTF-8, characters of the payload
    otherwise.
    """
    try:
        text = data.decode("utf-8")
        utf8_error = None
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        utf8_error = f"not valid UTF-8 at byte {exc.start}"
    text = text.rstrip(_TERMINATORS).lstrip(" ")
    aim = _AIM.match(text)
    if aim is not None:
        symbology = aim_symbology(aim[1])
        text = text[3:].lstrip(" ")
    else:
        symbology = (symbology_hint or "").strip().lower() or "unknown"
    error = utf8_error
    if error is None:
        if not text:
            error = "empty scan"
        elif len(text) > max_length:
            error = f"scan is {len(text)} characters; the limit is {max_length}"
        elif control := _CONTROL.search(text):
            error = f"control character 0x{ord(control[0]):02X} at position {control.start()}"
    return Framed(text, symbology, error)

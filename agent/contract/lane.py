"""The lane itself: agent and device state, scans, keyed entry, health checks."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from agent.contract.base import Envelope, OpSpec, Request, _Payload
from agent.errors import ErrorCode
from drivers.base import DeviceState, HealthLevel


class AgentState(_Payload):
    """`{base}/state`, retained. The broker publishes `{"state":"offline"}` as the last will."""

    state: Literal["online", "offline"]
    version: str | None = None
    since: datetime | None = None
    reason: str | None = Field(None, description="why the agent went offline, when it knows")


class DeviceCounters(_Payload):
    scans: int = 0
    rejects: int = Field(0, description="scans the normaliser marked invalid")
    drops: int = Field(0, description="input the driver had to discard (e.g. SYN_DROPPED)")
    reconnects: int = 0
    rate_limited: int = Field(
        0, description="scans dropped unread: the device sent faster than `scans.rate` allows"
    )


class DeviceRecord(_Payload):
    """`{base}/devices/{device_id}`, retained: one per configured input device."""

    device_id: str
    kind: str = Field(description="driver type: keyed, fifo, evdev, serial, hidpos, nfc")
    state: DeviceState
    last_error: str | None = None
    since: datetime = Field(description="when the device entered `state`")
    counters: DeviceCounters = DeviceCounters()


class NfcRecordInfo(_Payload):
    type: str = Field(description="NDEF record type, e.g. urn:nfc:wkt:U")
    display: str | None = Field(None, description="masked URI or text of the record")


class NfcInfo(_Payload):
    """What an NFC reader saw besides the token: the tag and its NDEF records, masked."""

    tag_type: str
    uid: str = Field(description="masked tag UID")
    records: list[NfcRecordInfo] = Field(default_factory=list)


class ScanMessage(Envelope):
    """`{base}/scan`: one normalised scan, QoS 1, not retained."""

    device_id: str
    symbology: str
    kind: str = Field(
        description="token kind from the normaliser (brief §5), e.g. gift_voucher_code"
    )
    valid: bool
    error: str | None = None
    display: str = Field(description="masked text for the screen; never the clear code")
    token_id: str | None = Field(
        None, description="opaque reference to the code for requests; null for invalid scans"
    )
    value: str | None = Field(
        None,
        description="the clear value, only for non-secret kinds (product_gtin, coupon, gs1, url)",
    )
    ais: dict[str, str] | None = Field(None, description="GS1 application identifiers")
    nfc: NfcInfo | None = Field(None, description="only for scans from an NFC reader")


class NfcRemovedData(_Payload):
    """The tag left the reader; the POS can clear what it showed for it."""

    device_id: str
    uid: str = Field(description="masked tag UID, as in the scan's `nfc.uid`")


class ScanInjectParams(Request):
    """Keyed entry from the POS screen: handled exactly like a scan from a device."""

    data: str = Field(min_length=1, max_length=4096)
    symbology: str = Field(
        "keyed",
        max_length=32,
        description="`nfc` for a tag the POS read: a tag UID in hex (4, 7 or 10 bytes, in either "
        "case, the bytes split by `:`, space or `-` or not) is the same `nfc_uid` token a lane "
        "NFC reader gives; other text (an NDEF URL) is scanned like a barcode",
    )


class DeviceHealthParams(Request):
    device_id: str | None = Field(None, description="one device; default: all")
    level: HealthLevel = HealthLevel.INTERNAL


class HealthItem(_Payload):
    name: str = Field(description="device id, `broker`, or `provider:<name>`")
    ok: bool
    detail: str


class HealthResult(_Payload):
    ok: bool
    items: list[HealthItem]


EVENTS: dict[str, type[_Payload]] = {"nfc.removed": NfcRemovedData}

OPS: dict[str, OpSpec] = {
    "scan.inject": OpSpec(
        ScanInjectParams,
        ScanMessage,
        "keyed entry; answered with the scan it produced",
        errors=(ErrorCode.RATE_LIMITED,),
    ),
    "device.health": OpSpec(
        DeviceHealthParams,
        HealthResult,
        "health checks of devices, broker and providers",
        errors=(),
    ),
}

"""Where a raw scan from any driver becomes a token: normalise, hide the code, publish, route.

Drivers deliver bytes (or NFC tags); this module turns them into a `ScanMessage` on `{base}/scan`
(masked, with an opaque `token_id`) and hands valid tokens to the flow that handles their kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from agent.contract import Event, NfcInfo, NfcRecordInfo, NfcRemovedData, ScanMessage
from agent.devices import DeviceRegistry
from agent.limits import ScanLimiter, ScanRateLimited
from agent.normalise import Normaliser, Token
from agent.tokens import TokenVault, display, mask
from drivers.base import DriverEvent, DroppedInput, RawScan, StatusChange, TagRead, TagRemoved

log = logging.getLogger(__name__)

FlowHandler = Callable[[Token, str], Coroutine[Any, Any, None]]

# Kind of a token read from an NFC tag that carries no NDEF text: its UID identifies it.
NFC_UID = "nfc_uid"
# A tag UID as text (a POS's NFC callback keyed through scan.inject): ISO/IEC 14443 sizes of 4, 7
# or 10 bytes in hex of either case, the bytes split by one kind of ':', ' ' or '-' or not at all,
# with the spaces and terminators keyed entry passes through.
_UID_TEXT = re.compile(
    rb" *([0-9A-Fa-f]{2}(?:([-: ]?)[0-9A-Fa-f]{2})(?:\2[0-9A-Fa-f]{2})*)[ \r\n\t]*"
)
_UID_SIZES = (4, 7, 10)


def _uid_token(uid: bytes) -> Token:
    """The token of a tag known by its UID: upper-case hex, however the UID was read."""
    return Token(NFC_UID, uid.hex().upper(), "nfc", valid=True, error=None)


def _tag_uid_of(raw: RawScan) -> bytes | None:
    """The tag UID a scan with symbology `nfc` carries, or None when its text is something else
    (a URL from an NDEF record), which is normalised like any scan."""
    if (raw.symbology or "").strip().lower() != "nfc":
        return None
    match = _UID_TEXT.fullmatch(raw.data)
    if match is None:
        return None
    uid = bytes.fromhex(re.sub(rb"[-: ]", b"", match[1]).decode("ascii"))
    return uid if len(uid) in _UID_SIZES else None


class ScanPipeline:
    def __init__(
        self,
        normaliser: Normaliser,
        vault: TokenVault,
        devices: DeviceRegistry,
        publish: Callable[[ScanMessage], None],
        emit: Callable[[Event], None],
        flows: Mapping[str, FlowHandler],
        limiter: ScanLimiter | None = None,
    ) -> None:
        self._normaliser = normaliser
        self._limiter = limiter
        self._vault = vault
        self._devices = devices
        self._publish = publish
        self._emit = emit
        self._flows = dict(flows)
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, event: DriverEvent) -> None:
        """The supervisor's sink: every driver event comes through here."""
        if isinstance(event, RawScan):
            with contextlib.suppress(ScanRateLimited):  # dropped and counted by the limiter
                self.scan(event)
        elif isinstance(event, TagRead):
            with contextlib.suppress(ScanRateLimited):
                self.tag(event)
        elif isinstance(event, TagRemoved):
            data = NfcRemovedData(device_id=event.device_id, uid=mask(event.uid.hex().upper()))
            self._emit(Event(type="nfc.removed", data=data.model_dump(mode="json")))
        elif isinstance(event, StatusChange):
            self._devices.status(event)
        elif isinstance(event, DroppedInput):
            log.warning("device %s dropped input: %s", event.device_id, event.reason)
            self._devices.dropped(event)

    def scan(self, raw: RawScan) -> ScanMessage:
        """Raises `ScanRateLimited` for a scan over its device's rate limit (dropped, counted).

        A scan with symbology `nfc` is a tag read that came as text: a UID in it is the same
        token a reader's `TagRead` gives, so the card goes to the same flow either way."""
        if self._limiter is not None:
            self._limiter.check(raw.device_id, raw.received)
        uid = _tag_uid_of(raw)
        token = (
            _uid_token(uid)
            if uid is not None
            else self._normaliser.normalise(raw.data, raw.symbology)
        )
        return self._publish_token(raw.device_id, token)

    def tag(self, tag: TagRead) -> ScanMessage:
        """A tag's first URI or text record is scanned like a barcode (a Gift Local QR URL on a
        tag works like the QR); a tag without one is identified by its UID."""
        if self._limiter is not None:
            self._limiter.check(tag.device_id, tag.received)
        text = next((r.text for r in tag.records if r.text), None)
        if text is not None:
            token = self._normaliser.normalise(text.encode(), "nfc")
        else:
            token = _uid_token(tag.uid)
        info = NfcInfo(
            tag_type=tag.tag_type,
            uid=mask(tag.uid.hex().upper()),
            records=[
                NfcRecordInfo(type=r.type, display=mask(r.text) if r.text else None)
                for r in tag.records
            ],
        )
        return self._publish_token(tag.device_id, token, nfc=info)

    def _publish_token(
        self, device_id: str, token: Token, nfc: NfcInfo | None = None
    ) -> ScanMessage:
        token_id = self._vault.put(token, device_id) if token.valid else None
        message = ScanMessage(
            device_id=device_id,
            symbology=token.symbology,
            kind=token.kind,
            valid=token.valid,
            error=token.error,
            display=display(token),
            token_id=token_id,
            value=None if token.secret else token.value,
            ais=token.ais,
            nfc=nfc,
        )
        self._publish(message)
        # Counted after publishing, so a device record never announces a scan not yet sent.
        self._devices.scanned(device_id, valid=token.valid)
        log.info(
            "scan on %s: %s %s%s",
            device_id,
            token.kind,
            message.display,
            "" if token.valid else f" rejected: {token.error}",
        )
        flow = self._flows.get(token.kind)
        if flow is not None and token_id is not None:
            # Flows call providers; run them beside the scan stream so a slow API never holds scans.
            task = asyncio.create_task(flow(token, token_id))
            self._tasks.add(task)
            task.add_done_callback(self._flow_done)
        return message

    def _flow_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("flow failed on a scan", exc_info=task.exception())

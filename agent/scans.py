"""Where a raw scan from any driver becomes a token: normalise, hide the code, publish, route.

Drivers deliver bytes; this module turns them into a `ScanMessage` on `{base}/scan` (masked, with an
opaque `token_id`) and hands valid tokens to the flow that handles their kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from agent.contract import ScanMessage
from agent.devices import DeviceRegistry
from agent.normalise import Normaliser, Token
from agent.tokens import TokenVault, display
from drivers.base import DriverEvent, DroppedInput, RawScan, StatusChange

log = logging.getLogger(__name__)

FlowHandler = Callable[[Token, str], Coroutine[Any, Any, None]]


class ScanPipeline:
    def __init__(
        self,
        normaliser: Normaliser,
        vault: TokenVault,
        devices: DeviceRegistry,
        publish: Callable[[ScanMessage], None],
        flows: Mapping[str, FlowHandler],
    ) -> None:
        self._normaliser = normaliser
        self._vault = vault
        self._devices = devices
        self._publish = publish
        self._flows = dict(flows)
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle(self, event: DriverEvent) -> None:
        """The supervisor's sink: every driver event comes through here."""
        if isinstance(event, RawScan):
            self.scan(event)
        elif isinstance(event, StatusChange):
            self._devices.status(event)
        elif isinstance(event, DroppedInput):
            log.warning("device %s dropped input: %s", event.device_id, event.reason)
            self._devices.dropped(event)

    def scan(self, raw: RawScan) -> ScanMessage:
        token = self._normaliser.normalise(raw.data, raw.symbology)
        token_id = self._vault.put(token, raw.device_id) if token.valid else None
        message = ScanMessage(
            device_id=raw.device_id,
            symbology=token.symbology,
            kind=token.kind,
            valid=token.valid,
            error=token.error,
            display=display(token),
            token_id=token_id,
            value=None if token.secret else token.value,
            ais=token.ais,
        )
        self._devices.scanned(raw.device_id, valid=token.valid)
        self._publish(message)
        log.info(
            "scan on %s: %s %s%s",
            raw.device_id,
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

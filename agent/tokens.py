"""Keeps clear codes inside the agent: MQTT and logs only ever see a mask and an opaque token id.

The vault is in memory on purpose: a clear voucher code is never written to disk by the agent. A
token id therefore lives until the agent restarts or `ttl` passes; after that the POS asks the
cashier to scan again (`unknown_token`).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from agent.errors import ErrorCode, LaneError
from agent.logs import printable
from agent.normalise import Token

MASK = "•"


def mask(value: str) -> str:
    """Show just enough of a secret for a cashier to match it with the card in hand; a control
    character among what is shown is escaped (an invalid scan's tail may hold a raw ESC)."""
    n = len(value)
    shown = 4 if n >= 12 else 2 if n >= 7 else 0
    hidden = min(n - shown, 12)
    return MASK * hidden + printable(value[n - shown :]) if shown else MASK * min(n, 12)


def display(token: Token) -> str:
    """The text a screen or a log line may show for a token, control characters escaped."""
    return mask(token.value) if token.secret else printable(token.value)


@dataclass(frozen=True, slots=True)
class Entry:
    token: Token
    device_id: str
    created: float


class TokenVault:
    """Bounded, expiring map from opaque token ids to the tokens scanned at this lane."""

    def __init__(
        self,
        ttl: float = 1800.0,
        max_entries: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._by_value: dict[tuple[str, str], str] = {}

    def put(self, token: Token, device_id: str) -> str:
        """Store a token; the same code scanned again gets the same id (and a fresh lifetime)."""
        self._expire()
        key = (token.kind, token.value)
        token_id = self._by_value.get(key) or f"tok_{secrets.token_hex(8)}"
        self._entries.pop(token_id, None)
        self._entries[token_id] = Entry(token, device_id, self._clock())
        self._by_value[key] = token_id
        while len(self._entries) > self._max:
            self._forget(next(iter(self._entries)))
        return token_id

    def get(self, token_id: str) -> Entry | None:
        self._expire()
        return self._entries.get(token_id)

    def require(self, token_id: str, kinds: Collection[str], what: str) -> Token:
        """The token a request names, which must be one of `kinds` (`what` names them)."""
        entry = self.get(token_id)
        if entry is None:
            raise LaneError(
                ErrorCode.UNKNOWN_TOKEN, f"token {token_id} is unknown or expired; scan it again"
            )
        if entry.token.kind not in kinds:
            raise LaneError(
                ErrorCode.INVALID_REQUEST, f"token {token_id} is a {entry.token.kind}, not {what}"
            )
        return entry.token

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, token_id: str) -> None:
        entry = self._entries.pop(token_id)
        self._by_value.pop((entry.token.kind, entry.token.value), None)

    def _expire(self) -> None:
        deadline = self._clock() - self._ttl
        while self._entries:
            token_id, entry = next(iter(self._entries.items()))
            if entry.created >= deadline:
                break
            self._forget(token_id)

"""The one error vocabulary the POS sees on MQTT, whichever provider or layer raised it."""

from __future__ import annotations

import enum
import errno
import sqlite3
from typing import Any


class ErrorCode(enum.StrEnum):
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_OP = "unknown_op"
    REQUEST_ID_CONFLICT = "request_id_conflict"
    UNKNOWN_TOKEN = "unknown_token"
    NOT_FOUND = "not_found"
    NOT_REDEEMABLE = "not_redeemable"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_LOCATION = "wrong_location"
    ALREADY_REVERSED = "already_reversed"
    BASKET_LOCKED = "basket_locked"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    UNKNOWN_OUTCOME = "unknown_outcome"
    EARLIER_REDEMPTION = "earlier_redemption"
    NOT_CONFIGURED = "not_configured"
    RATE_LIMITED = "rate_limited"
    BUSY = "busy"
    STORAGE_FULL = "storage_full"
    INTERNAL = "internal"


class LaneError(Exception):
    """An error with a code from the vocabulary and a message a cashier can read."""

    def __init__(
        self, code: ErrorCode, message: str, *, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Machine-readable facts the POS can act on, e.g. {"available": 1250, "currency": "USD"}
        # with insufficient_balance so it can offer a partial payment.
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


class ProviderError(LaneError):
    """Raised by provider adapters; `message` keeps the provider's own wording for the cashier."""


def out_of_space(exc: BaseException) -> bool:
    """A write the disk had no room for (SQLite's SQLITE_FULL, the kernel's ENOSPC or EDQUOT):
    unlike a bug, it passes once space is freed, so the POS is told to send the request again."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)

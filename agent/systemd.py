"""systemd service notifications (sd_notify) without a dependency.

The unit runs with `Type=notify`: systemd considers the agent started only when it says READY=1,
which it does once its devices and the broker are up, so `systemctl start` and units ordered
after it see a working agent, not a process that merely exists. STATUS= lines are what a
technician reads in `systemctl status lane-agent`. WATCHDOG=1 pings keep `WatchdogSec=` from
restarting the agent; they are sent only while the agent reports itself healthy, so a wedged
scanner loop or a lost broker gets the agent restarted instead of looking alive.

The protocol is systemd's stable one (sd_notify(3)): a single AF_UNIX datagram of
newline-separated KEY=VALUE lines sent to the socket named in `$NOTIFY_SOCKET`, a file system path
or, with a leading `@`, an abstract socket name. systemd's own advice is that a daemon must not
fail because notifying failed, so send errors are logged at debug level and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import socket
from collections.abc import Callable
from typing import Final

__all__ = ["FROM_ENV", "Notifier", "run_watchdog", "watchdog_interval"]

log = logging.getLogger(__name__)

# systemd reads notifications into a PIPE_BUF (4096 byte) buffer and drops a truncated message
# whole, so a long STATUS would silently lose the READY=1 or STOPPING=1 sent with it.
STATUS_MAX_BYTES: Final = 1024

# A full receive queue (PID 1 stuck) must not wedge the event loop for long; the next ping or
# status update simply tries again.
SEND_TIMEOUT: Final = 1.0

WITHHELD_STATUS: Final = "watchdog withheld: unhealthy"


class _FromEnv(enum.Enum):
    TOKEN = enum.auto()


FROM_ENV: Final = _FromEnv.TOKEN
"""Default for `Notifier(socket_path=...)`: read `$NOTIFY_SOCKET` at construction."""


def _one_line(text: str) -> str:
    """Make `text` a single STATUS line that fits systemd's notification buffer.

    A newline would end the STATUS value and start a bogus KEY=VALUE line; a NUL would cut the
    datagram short on systemd's side.
    """
    line = " | ".join(part for part in text.replace("\0", "").splitlines() if part.strip())
    raw = line.encode("utf-8")
    if len(raw) <= STATUS_MAX_BYTES:
        return line
    cut = raw[: STATUS_MAX_BYTES - len("…".encode())].decode("utf-8", errors="ignore")
    return cut + "…"


def _address(socket_path: str) -> str | None:
    """Turn `$NOTIFY_SOCKET` syntax into an AF_UNIX address, or None when unsupported."""
    if socket_path.startswith("@"):
        return "\0" + socket_path[1:]
    if socket_path.startswith("/"):
        return socket_path
    # Newer systemd also accepts `vsock:` addresses (for VMs); a lane device runs none of those.
    return None


class Notifier:
    """Sends sd_notify messages to systemd; every call is a no-op when not run by systemd.

    `enabled` is False when there is no notification socket (run from a shell, in tests, or
    under a service manager without Type=notify), so callers never need to check it.
    """

    def __init__(self, socket_path: str | _FromEnv | None = FROM_ENV) -> None:
        if socket_path is FROM_ENV:
            socket_path = os.environ.get("NOTIFY_SOCKET") or None
        self._address: str | None = None
        self._sock: socket.socket | None = None
        if socket_path:
            self._address = _address(socket_path)
            if self._address is None:
                log.debug(
                    "sd_notify: unsupported NOTIFY_SOCKET %r, notifications disabled", socket_path
                )
        self.enabled: bool = self._address is not None

    def ready(self, status: str) -> None:
        """Tell systemd start-up is complete (READY=1), with the status a technician sees."""
        self._send("READY=1", "STATUS=" + _one_line(status))

    def status(self, text: str) -> None:
        """Replace the one-line status shown by `systemctl status` (newlines become " | ")."""
        self._send("STATUS=" + _one_line(text))

    def watchdog(self) -> None:
        """Ping the service watchdog (WATCHDOG=1); see `run_watchdog` for when to call it."""
        self._send("WATCHDOG=1")

    def stopping(self, status: str) -> None:
        """Tell systemd a shutdown has begun (STOPPING=1), so it is not taken for a hang."""
        self._send("STOPPING=1", "STATUS=" + _one_line(status))

    def close(self) -> None:
        """Release the socket; later calls open a new one. Safe to call more than once."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, *lines: str) -> None:
        if self._address is None:
            return
        message = "\n".join(lines).encode("utf-8")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.settimeout(SEND_TIMEOUT)
                self._sock = sock
            # sendto (not connect) resolves the address on every message, so a notification
            # socket re-created by `systemctl daemon-reexec` is still reached.
            self._sock.sendto(message, self._address)
        except OSError as exc:
            log.debug("sd_notify: sending %r failed: %s", message, exc)


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings, or None when systemd expects none from this process.

    systemd sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`) for the main process when WatchdogSec= is
    on. Pinging at half the timeout, as sd_watchdog_enabled(3) recommends, tolerates one late
    ping. A `$WATCHDOG_PID` naming another process means the variables were inherited, not meant
    for us.
    """
    usec_text = os.environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    try:
        usec = int(usec_text)
    except ValueError:
        log.debug("sd_notify: ignoring malformed WATCHDOG_USEC=%r", usec_text)
        return None
    if usec <= 0:
        return None
    pid_text = os.environ.get("WATCHDOG_PID")
    if pid_text:
        try:
            pid = int(pid_text)
        except ValueError:
            log.debug("sd_notify: ignoring malformed WATCHDOG_PID=%r", pid_text)
            return None
        if pid != os.getpid():
            return None
    return usec / 2 / 1e6


def _is_healthy(healthy: Callable[[], bool]) -> bool:
    try:
        return bool(healthy())
    except Exception:
        # A health check that crashes cannot vouch for anything: treat it as unhealthy so the
        # watchdog restarts the agent rather than pinging on.
        log.exception("watchdog health check raised; treating the agent as unhealthy")
        return False


async def run_watchdog(notifier: Notifier, healthy: Callable[[], bool], interval: float) -> None:
    """Ping the watchdog every `interval` seconds while `healthy()` is True; runs until cancelled.

    A ping only proves the event loop still turns, so it is gated on the agent's own health
    check: while `healthy()` is False (or raises) no ping is sent and, once per unhealthy spell,
    the status becomes "watchdog withheld: unhealthy". systemd then restarts the agent when
    WatchdogSec= runs out unless health returns first, in which case pinging resumes. This
    module cannot know why the agent is unhealthy, so the caller should send its own STATUS
    with the reason, and again once it has recovered.
    """
    withheld = False
    while True:
        if _is_healthy(healthy):
            notifier.watchdog()
            withheld = False
        elif not withheld:
            notifier.status(WITHHELD_STATUS)
            withheld = True
        await asyncio.sleep(interval)

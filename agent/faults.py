"""Test-only fault hooks, for the service tier (tests/service) to prove that systemd's watchdog
restarts a hung agent.

Off unless the process starts with `LANE_AGENT_FAULT_HOOKS=1` in its environment, which only a
systemd drop-in written by root can give the service; nothing from MQTT or the config reaches
them. With the hook on, SIGUSR2 blocks the event loop (as a deadlocked driver call or a runaway
computation would): the watchdog pings stop with it, which is exactly what WatchdogSec= is for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

log = logging.getLogger(__name__)

ENV = "LANE_AGENT_FAULT_HOOKS"
BLOCK_LOOP_SIGNAL = signal.SIGUSR2


def _block_loop() -> None:
    log.warning("fault hook: SIGUSR2 blocks the event loop now (%s=1)", ENV)
    while True:
        time.sleep(3600)


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """Install the hooks if the environment asks for them; say whether it did."""
    if os.environ.get(ENV) != "1":
        return False
    loop.add_signal_handler(BLOCK_LOOP_SIGNAL, _block_loop)
    log.warning("test-only fault hooks are on (%s=1): SIGUSR2 blocks the event loop", ENV)
    return True

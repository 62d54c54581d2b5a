"""Workload 1: scan-to-MQTT latency, lane-agent vs barcode-server on the same uinput keyboard.

One scan at a time (an EAN-8 and Enter, 1 ms per key report): the clock starts just before the
Enter key-down is written to /dev/uinput and stops when the bench's subscriber receives the
message carrying that code. The next scan starts after the message (plus a short pause), so each
sample is one scan's path with nothing queued ahead of it. The two daemons never run at once:
both grab the keyboard, and a grab is exclusive.
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import ean8, summary_ms
from bench.context import (
    Contender,
    Run,
    barcode_keyboard,
    lane_keyboard,
    start_barcode_keyboard,
    start_lane_keyboard,
)
from bench.daemons import stop_all
from bench.keyboard import NAME, Scanner

INTERVAL = 0.001  # a full-speed USB keyboard's fastest report rate
PAUSE = 0.01
TIMEOUT = 15.0
WARMUP = 10


def measure(run: Run, scanner: Scanner, contender: Contender, count: int) -> dict[str, Any]:
    latencies: list[int] = []
    lost: list[str] = []
    started = time.monotonic()
    for i in range(WARMUP + count):
        code = ean8(run.next_serial())
        mark = run.subscriber.mark()
        sent = scanner.type_scan(code, INTERVAL)
        got = run.subscriber.wait_for(contender.carrying(code), TIMEOUT, mark)
        if got is None:
            contender.daemon.check_alive()
            lost.append(code)
        elif i >= WARMUP:
            latencies.append(got.at_ns - sent)
        time.sleep(PAUSE)
    return {
        **summary_ms(latencies),
        "lost": len(lost),
        "seconds": round(time.monotonic() - started, 1),
    }


def run_workload(run: Run, scanner: Scanner, count: int) -> dict[str, Any]:
    """{"lane-agent": {...}, "barcode-server": {...}} with n, p50, p99, max, mean (ms), lost."""
    results: dict[str, Any] = {"count": count, "interval_ms": INTERVAL * 1000}
    lane = lane_keyboard(run, "latency", scanner.usb_id)
    try:
        start_lane_keyboard(run, lane)
        results["lane-agent"] = measure(run, scanner, lane, count)
    finally:
        stop_all(lane.daemon)
    peer = barcode_keyboard(run, "latency", NAME)
    try:
        start_barcode_keyboard(peer, scanner.path)
        results["barcode-server"] = measure(run, scanner, peer, count)
    finally:
        stop_all(peer.daemon)
    return results

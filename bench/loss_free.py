"""Workload 2: the fastest keystroke rate at which every one of 10,000 scans arrives intact.

A ladder of paces, fastest first: key report interval (a press and a release each take one) and
the pause between one scan's Enter and the next scan's first key. At each step a probe of
`probe` scans typed back to back is tried first; a pace that passes it is confirmed with the
full `count`. The first pace that passes the full count is the answer. "Intact" means the set of
values published equals the set typed: nothing missing, nothing garbled (a value never typed,
e.g. two scans run together or a digit lost), nothing twice. A trial ends when every scan has
arrived or nothing has arrived for `IDLE` seconds (a daemon may drain a backlog long after the
typing stopped; that is not loss). A probe that already shows a garbled value stops typing early.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import ean8, rss_kib
from bench.context import (
    Contender,
    Run,
    barcode_keyboard,
    lane_drops,
    lane_keyboard,
    start_barcode_keyboard,
    start_lane_keyboard,
)
from bench.daemons import stop_all
from bench.keyboard import NAME, Scanner

# (key report interval, pause after each scan), seconds: the fastest keys first, then longer
# pauses between scans at that key rate (a reader that loses the next scan's first keys while
# it finishes the last one needs a pause, not slower keys), then slower keys. 0: as fast as the
# bench can write (no USB keyboard is that fast; it shows the headroom).
LADDER: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (0.001, 0.0),
    (0.001, 0.02),
    (0.001, 0.05),
    (0.001, 0.1),
    (0.001, 0.2),
    (0.002, 0.2),
    (0.004, 0.2),
)
KEYS_PER_SCAN = 9  # 8 digits and Enter
IDLE = 20.0
CAP = 3600.0  # one trial
BUDGET = 3600.0  # one daemon's ladder: no new pace is tried after this; one may finish


def trial(
    run: Run, scanner: Scanner, contender: Contender, count: int, interval: float, gap: float
) -> dict[str, Any]:
    codes = [ean8(run.next_serial()) for _ in range(count)]
    wanted = set(codes)
    mark = run.subscriber.mark()
    is_lane = contender.label == "lane-agent"
    drops_before = lane_drops(run, contender.since) if is_lane else 0
    stalls_before = scanner.stalls
    started = time.monotonic()
    typed = 0
    checked = mark
    garbled_early = False
    for code in codes:
        scanner.type_scan(code, interval, keep_pace=True)
        if gap:
            scanner.pause(gap)
        typed += 1
        if typed % 50 == 0:
            new = run.subscriber.since(checked)
            checked += len(new)
            early = (contender.value(m) for m in new)
            if any(v and v not in wanted for v in early):
                garbled_early = True
                break
            contender.daemon.check_alive()
    typing = time.monotonic() - started
    # A lone Enter flushes any half-read scan so it can't prefix the next trial's first one.
    scanner.type_scan("", 0.01)
    last_at = time.monotonic()
    values: list[str] = []
    got: set[str] = set()
    read = mark
    idle = 3.0 if garbled_early else IDLE  # a failed trial only needs its counts settled
    while time.monotonic() - last_at < idle and time.monotonic() - started < CAP:
        new = run.subscriber.since(read)
        read += len(new)
        fresh = [v for m in new if (v := contender.value(m))]
        if fresh:
            values += fresh
            got.update(fresh)
            last_at = time.monotonic()
        if len(got & wanted) == typed:
            break
        time.sleep(0.5)
    drained = time.monotonic() - started - typing
    values += [v for m in run.subscriber.since(read) if (v := contender.value(m))]
    counts = Counter(values)
    sent = set(codes[:typed])
    missing = len(sent - counts.keys())
    garbled = sum(n for v, n in counts.items() if v not in wanted)
    twice = sum(n - 1 for v, n in counts.items() if v in wanted and n > 1)
    drops = lane_drops(run, contender.since) - drops_before if is_lane else None
    intact = typed == count and missing == 0 and garbled == 0 and twice == 0
    return {
        "scans": typed,
        "interval_ms": interval * 1000,
        "gap_ms": gap * 1000,
        "intact": intact,
        "missing": missing,
        "garbled": garbled,
        "duplicates": twice,
        "driver_drops": drops,
        "writer_stalls": scanner.stalls - stalls_before,
        "garbled_sample": sorted(v for v in counts if v not in wanted)[:5],
        "typing_s": round(typing, 1),
        "drain_s": round(drained, 1),
        "keys_per_s": round(typed * KEYS_PER_SCAN / typing, 1) if typing else None,
        "scans_per_s_typed": round(typed / typing, 1) if typing else None,
    }


def search(
    run: Run, scanner: Scanner, contender: Contender, count: int, probe: int
) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    started = time.monotonic()
    for interval, gap in LADDER:
        if time.monotonic() - started > BUDGET:
            return {"fastest": None, "trials": trials, "stopped": "time budget spent"}
        for scans in (probe, count) if probe < count else (count,):
            result = trial(run, scanner, contender, scans, interval, gap)
            result["kind"] = "confirm" if scans == count else "probe"
            trials.append(result)
            print(f"bench: loss-free {contender.label}: {result}", flush=True)
            if not result["intact"]:
                break
        else:
            return {"fastest": trials[-1], "trials": trials}
    return {"fastest": None, "trials": trials}


def with_rss(contender: Contender, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The search's result, with the daemon's VmRSS before it and after all its scans."""
    time.sleep(5)
    before = rss_kib(contender.daemon.pid)
    result = work()
    time.sleep(5)
    scans = sum(t["scans"] for t in result["trials"])
    return {
        **result,
        "rss_start_kib": before,
        "rss_after_kib": rss_kib(contender.daemon.pid),
        "scans_total": scans,
    }


def run_workload(run: Run, scanner: Scanner, count: int, probe: int) -> dict[str, Any]:
    results: dict[str, Any] = {"count": count, "probe": probe, "keys_per_scan": KEYS_PER_SCAN}
    lane = lane_keyboard(run, "lossfree", scanner.usb_id)
    try:
        start_lane_keyboard(run, lane)
        results["lane-agent"] = with_rss(lane, lambda: search(run, scanner, lane, count, probe))
    finally:
        stop_all(lane.daemon)
    peer = barcode_keyboard(run, "lossfree", NAME)
    try:
        start_barcode_keyboard(peer, scanner.path)
        results["barcode-server"] = with_rss(peer, lambda: search(run, scanner, peer, count, probe))
    finally:
        stop_all(peer.daemon)
    return results

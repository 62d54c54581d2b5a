"""Workload 5: what running costs. Resident memory (VmRSS in /proc/PID/status), CPU time
(utime + stime in /proc/PID/stat) and start-up time.

- `idle` (in the VM, beside real devices): the four daemons each with its device, started one
  after the other; start to ready is timed for each as it starts (lane-agent: READY=1 on the
  sd_notify socket the bench listens on; barcode-server: its web server accepting; nfc2mqtt:
  its `online` message), then, after a 10 s settle, RSS and the CPU time used over 60 s idle.
  The keyboard pair gets two uinput keyboards (a grab is exclusive), the NFC pair two UDP
  readers with no tag on them, polling as they would on an empty lane.
- `soak` (on the host: it needs no device): lane-agent reading a named pipe, RSS idle, then
  100,000 scans of distinct values (a third each voucher-shaped codes that the sandbox checks
  and rejects as unknown, EAN-8 product codes and URLs), RSS every 10,000, and after a 10 s
  settle. The token vault holds at most 10,000 tokens, so growth should stop once it is full.
  barcode-server reads only evdev devices, so its RSS after scans is taken in the VM after the
  loss-free workload's scans instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import (
    Broker,
    Received,
    Subscriber,
    cpu_seconds,
    ean8,
    free_udp_port,
    rss_kib,
)
from bench.context import START_TIMEOUT, Run, barcode_keyboard, lane_keyboard
from bench.daemons import LANE_BASE, BarcodeServer, Daemon, LaneAgent, Nfc2Mqtt, stop_all
from bench.nfc_latency import fernet_tag
from bench.throughput import Feeder, fifo_devices, wait_pipe

SETTLE = 10.0


def idle(
    run: Run, lane_usb_id: str, peer_name: str, peer_path: str, seconds: float
) -> dict[str, Any]:
    key, _ = fernet_tag(run.workdir)
    lane_kbd = lane_keyboard(run, "idle", lane_usb_id).daemon
    peer_kbd = barcode_keyboard(run, "idle", peer_name).daemon
    port = free_udp_port()
    lane_nfc = LaneAgent(
        run.workdir / "idle-lane-agent-nfc",
        run.broker.port,
        f'[devices.nfc]\ntype = "nfc"\npath = "udp:localhost:{port}"\n',
        lane="l2",  # beside the keyboard lane: same broker, so another lane (client id)
    )
    peer_nfc = Nfc2Mqtt(
        run.workdir / "idle-nfc2mqtt", run.broker.port, f"udp:localhost:{free_udp_port()}", key
    )
    daemons: dict[str, Daemon] = {
        "lane-agent (keyboard)": lane_kbd,
        "barcode-server (keyboard)": peer_kbd,
        "lane-agent (NFC)": lane_nfc,
        "nfc2mqtt (NFC)": peer_nfc,
    }
    results: dict[str, Any] = {"idle_s": seconds}
    try:
        for label, daemon in daemons.items():
            mark = run.subscriber.mark()
            if isinstance(daemon, LaneAgent):
                daemon.start()
                ready = daemon.wait_ready(START_TIMEOUT)
            elif isinstance(daemon, BarcodeServer):
                daemon.start()
                ready = daemon.wait_ready(START_TIMEOUT)
                daemon.wait_reading(peer_path, START_TIMEOUT)
            else:
                assert isinstance(daemon, Nfc2Mqtt)
                daemon.start()
                ready = daemon.wait_ready(run.subscriber, START_TIMEOUT, mark)
            results[label] = {"ready_s": round((ready - daemon.started_ns) / 1e9, 2)}
        time.sleep(SETTLE)
        before = {label: cpu_seconds(d.pid) for label, d in daemons.items()}
        for label, daemon in daemons.items():
            results[label]["rss_idle_kib"] = rss_kib(daemon.pid)
        time.sleep(seconds)
        for label, daemon in daemons.items():
            daemon.check_alive()
            used = cpu_seconds(daemon.pid) - before[label]
            results[label]["idle_cpu_s"] = round(used, 2)
            results[label]["idle_cpu_pct"] = round(100 * used / seconds, 2)
            results[label]["rss_after_idle_kib"] = rss_kib(daemon.pid)
    finally:
        stop_all(*daemons.values())
    return results


def soak(workdir: Path, count: int) -> dict[str, Any]:
    broker = Broker(workdir / "soak-broker")
    broker.start()
    subscriber = Subscriber(broker.port, [f"{LANE_BASE}/scan"])
    fifo = workdir / "soak-lane-agent" / "scan.fifo"
    agent = LaneAgent(workdir / "soak-lane-agent", broker.port, fifo_devices(fifo))
    samples: list[tuple[int, int]] = []
    try:
        agent.start()
        agent.wait_ready(START_TIMEOUT)
        wait_pipe(fifo)
        feeder = Feeder(fifo)
        time.sleep(SETTLE)
        samples.append((0, rss_kib(agent.pid)))
        sent = done = 0
        seen = subscriber.mark()
        started = time.monotonic()
        deadline = started + max(600.0, count / 20)
        step = max(1, count // 10)
        progress = time.monotonic()
        while done < count and time.monotonic() < deadline:
            if time.monotonic() - progress > 30:
                break  # nothing for a while: report what got through rather than hang
            room = min(200 - (sent - done), count - sent)
            if room > 0:
                feeder.write([scan_value(sent + i).encode() for i in range(room)])
                sent += room
            new: list[Received] = subscriber.since(seen)
            seen += len(new)
            before = done
            done += len(new)
            if new:
                progress = time.monotonic()
            if done // step > before // step:
                samples.append((done, rss_kib(agent.pid)))
            if not new:
                time.sleep(0.002)
        seconds = time.monotonic() - started
        feeder.close()
        time.sleep(SETTLE)
        settled = rss_kib(agent.pid)
        return {
            "scans": done,
            "sent": sent,
            "seconds": round(seconds, 1),
            "rss_idle_kib": samples[0][1],
            "rss_samples_kib": samples,
            "rss_after_kib": settled,
        }
    finally:
        stop_all(agent)
        subscriber.close()
        broker.stop()


def scan_value(i: int) -> str:
    """Distinct values of three kinds, so the token vault and the logs see real variety."""
    match i % 3:
        case 0:
            return f"2{i:011d}"  # voucher-shaped: the sandbox is asked and says unknown
        case 1:
            return ean8(i)
        case _:
            return f"https://example.com/p/{i}"

"""Workload 4: scans per second with one CPU, on the host (no VM: no device is involved).

- pipeline: the real daemon, pinned to one CPU, reading a named pipe (its `fifo` driver), every
  line the sandbox's $50 demo voucher code: normalise, mask, publish the scan, validate against
  the sandbox ledger (SQLite), publish `gift.validated`. The broker and the bench run on the
  other CPU. The bench keeps at most WINDOW scans in flight (written, not yet validated), so the
  rate is what the daemon sustains, not how fast a pipe fills. Rate: scans / (first write to the
  last `gift.validated` received).
- normaliser: `Normaliser.normalise` alone, in this process pinned to one CPU, over a mix of
  every kind of scan.
- barcode-server has neither a normaliser nor a provider; its nearest path, one scan event to
  MQTT (`MQTTNotifier._send_event`: orjson, connect, publish at QoS 2, disconnect), is driven
  the same way by bench/peer_publish.py under its own interpreter, pinned to the same CPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from agent.normalise import Normaliser
from bench.common import REPO, Broker, Received, Subscriber, cpu_seconds, now_ns
from bench.daemons import BARCODE_SERVER_BIN, BARCODE_TOPIC, LANE_BASE, LaneAgent, stop_all

DEMO_GIFT = "100000000001"  # the sandbox's $50 demo voucher
WINDOW = 200
STALLED = 30.0
CPU = 0

MIX = [
    b"100000000001",  # gift voucher code
    b"https://giftlocal.com/v/demo-gift-50",  # gift voucher token (URL)
    b"]E05901234123457",  # EAN-13 with AIM identifier
    b"96385074",  # EAN-8
    b"]C1010950600013435210ABC\x1d17251231",  # GS1-128 with FNC1
    b"9812345678901",  # coupon
    b"https://example.com/promo?id=7",  # url
    b"1234567",  # loyalty redemption code
    b"(555) 123-4567",  # phone
    b"Someone@Example.com",  # email
    b"P12345",  # loyalty user QR
    b"hello world\r\n",  # unknown, with terminator
]


def other_cpus() -> set[int]:
    cpus = os.sched_getaffinity(0)
    return cpus - {CPU} or cpus


def fifo_devices(path: Path) -> str:
    return f'[devices.pipe]\ntype = "fifo"\npath = "{path}"\n'


class Feeder:
    """Writes scans into the daemon's named pipe, WINDOW at most ahead of what came back."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY)

    def write(self, lines: list[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def close(self) -> None:
        os.close(self.fd)


def pipeline(
    workdir: Path,
    count: int,
    profile: Callable[[int], AbstractContextManager[None]] | None = None,
) -> dict[str, Any]:
    """`profile`: wraps the measured part, given the agent's pid (bench/profile.py)."""
    broker = Broker(workdir / "broker")
    broker.start()
    subscriber = Subscriber(broker.port, [f"{LANE_BASE}/#"])
    fifo = workdir / "pipeline-lane-agent" / "scan.fifo"
    agent = LaneAgent(workdir / "pipeline-lane-agent", broker.port, fifo_devices(fifo))
    try:
        os.sched_setaffinity(0, other_cpus())
        agent.start(cpu=CPU)
        agent.wait_ready(120)
        wait_pipe(fifo)
        feeder = Feeder(fifo)

        def validated(m: Received) -> bool:
            return m.topic == f"{LANE_BASE}/event" and b'"gift.validated"' in m.payload

        # Warm-up: the first scans pay for imports and the ledger's first query.
        feeder.write([DEMO_GIFT.encode()] * 50)
        done = 0
        seen = subscriber.mark()
        while done < 50:
            new = subscriber.since(seen)
            seen += len(new)
            done += sum(1 for m in new if validated(m))
            time.sleep(0.01)
        with profile(agent.pid) if profile else contextlib.nullcontext():
            cpu_before = cpu_seconds(agent.pid)
            start_ns = now_ns()
            sent = done = 0
            last_ns = start_ns
            scans = 0
            deadline = time.monotonic() + max(120.0, count / 20)
            progress = time.monotonic()
            while done < count and time.monotonic() < deadline:
                if time.monotonic() - progress > STALLED:
                    break  # nothing for a while: report what got through rather than hang
                room = min(WINDOW - (sent - done), count - sent)
                if room > 0:
                    feeder.write([DEMO_GIFT.encode()] * room)
                    sent += room
                new = subscriber.since(seen)
                seen += len(new)
                for m in new:
                    if validated(m):
                        done += 1
                        last_ns = m.at_ns
                        progress = time.monotonic()
                    elif m.topic == f"{LANE_BASE}/scan":
                        scans += 1
                if not new:
                    time.sleep(0.002)
            seconds = (last_ns - start_ns) / 1e9
            cpu = cpu_seconds(agent.pid) - cpu_before
        feeder.close()
        return {
            "scans": done,
            "sent": sent,
            "scan_messages": scans,
            "seconds": round(seconds, 2),
            "per_s": round(done / seconds, 1) if seconds else None,
            "agent_cpu_s": round(cpu, 2),
            "cpu_ms_per_scan": round(cpu * 1000 / done, 3) if done else None,
        }
    finally:
        stop_all(agent)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        subscriber.close()
        broker.stop()


def wait_pipe(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


def normaliser(count: int) -> dict[str, Any]:
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CPU})
    try:
        norm = Normaliser()
        inputs = [MIX[i % len(MIX)] for i in range(count)]
        for data in inputs[:1000]:
            norm.normalise(data)
        started = time.perf_counter()
        for data in inputs:
            norm.normalise(data)
        seconds = time.perf_counter() - started
    finally:
        os.sched_setaffinity(0, before)
    return {
        "scans": count,
        "seconds": round(seconds, 3),
        "per_s": round(count / seconds),
        "us_per_scan": round(seconds * 1e6 / count, 2),
    }


def peer_publish(workdir: Path, count: int) -> dict[str, Any]:
    broker = Broker(workdir / "peer-broker")
    broker.start()
    subscriber = Subscriber(broker.port, [BARCODE_TOPIC])
    try:
        out = subprocess.run(
            [
                str(BARCODE_SERVER_BIN / "python"),
                str(REPO / "bench" / "peer_publish.py"),
                str(broker.port),
                BARCODE_TOPIC,
                str(count),
                str(CPU),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=workdir,
            timeout=max(300, count / 10),
        )
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        deadline = time.monotonic() + 30
        while subscriber.mark() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        result["received"] = subscriber.mark()
        return result
    finally:
        subscriber.close()
        broker.stop()


def run_workload(workdir: Path, count: int, normalise_count: int) -> dict[str, Any]:
    return {
        "cpu": CPU,
        "lane-agent pipeline": pipeline(workdir, count),
        "lane-agent normaliser": normaliser(normalise_count),
        "barcode-server event to MQTT": peer_publish(workdir, min(count, 5000)),
    }

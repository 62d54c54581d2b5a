"""Workload 5 on the host: start to READY and idle memory, against the issue's targets (idle RSS
of a fifo-only lane at most 40 MiB, start to READY at most 1.0 s) and beside the least a daemon
doing the same job can cost.

Four programs, each started `starts` times, one at a time, against one mosquitto, round after
round (one of each per round, so a busy moment of the shared host falls on all of them):

- lane-agent with one named pipe (`fifo`) and the sandbox provider;
- lane-agent with every driver type configured: the named pipe, an evdev keyboard, a serial
  scanner and a HID-POS scanner at paths and USB ids that do not exist (each driver waits for
  its device, as on a lane whose scanner is unplugged: checked from the device records it
  publishes), and an NFC reader on nfcpy's UDP transport (polling, with no tag);
- bench/minimal_peer.py: about 40 lines of aiomqtt that publish lines from a named pipe, a
  retained `online` once connected and READY=1, on the same interpreter and venv;
- bench/import_floor.py: pydantic and aiomqtt imported and one model built, then READY=1.

Start to READY: from just before the fork to the sd_notify READY=1 datagram on the socket the
bench gives each one (NOTIFY_SOCKET), as systemd's Type=notify. Idle RSS: VmRSS after a settle.
One untimed round first, so the figures are those of a restart (bytecode compiled, files in the
page cache, the SQLite stores created), which is what a lane sees after its first boot; in that
round a line written to each named pipe must come out on MQTT. Then, for the explanation, the
fifo lane's memory by mapping (/proc/PID/smaps) and step by step (bench/rss_steps.py).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    Broker,
    Received,
    Subscriber,
    free_udp_port,
    rss_kib,
    smaps_rss_kib,
)
from bench.context import START_TIMEOUT
from bench.daemons import (
    MINIMAL_TOPIC,
    ImportFloor,
    LaneAgent,
    MinimalPeer,
    Notifying,
    stop_all,
)
from bench.throughput import Feeder, fifo_devices, wait_pipe

SETTLE = 10.0
FIFO = "lane-agent (fifo)"
EVERY = "lane-agent (every driver)"
MINIMAL = "minimal aiomqtt peer"
FLOOR = "pydantic + aiomqtt, one model"
# Devices that do not exist on the host: their drivers must wait for them, not fail the start.
ABSENT = {
    "kbd": '[devices.kbd]\ntype = "evdev"\npath = "/dev/input/by-id/bench-absent-event-kbd"\n',
    "ser": '[devices.ser]\ntype = "serial"\nport = "/dev/serial/by-id/bench-absent-if00"\n',
    "hid": '[devices.hid]\ntype = "hidpos"\nvendor_id = "fffe"\nproduct_id = "0001"\n',
}
TARGET_RSS_MIB = 40.0
TARGET_READY_S = 1.0


def programs(workdir: Path, port: int) -> tuple[LaneAgent, dict[str, Notifying]]:
    """The fifo lane, and every program measured (the fifo lane first)."""
    every = fifo_devices(workdir / "every" / "scan.fifo") + "".join(ABSENT.values())
    every += f'[devices.nfc]\ntype = "nfc"\npath = "udp:localhost:{free_udp_port()}"\n'
    fifo = LaneAgent(workdir / "fifo", port, fifo_devices(workdir / "fifo" / "scan.fifo"))
    return fifo, {
        FIFO: fifo,
        EVERY: LaneAgent(workdir / "every", port, every, lane="l2"),
        MINIMAL: MinimalPeer(workdir / "minimal", port, workdir / "minimal" / "scan.fifo"),
        FLOOR: ImportFloor(workdir / "floor"),
    }


def run_workload(workdir: Path, starts: int, settle: float = SETTLE) -> dict[str, Any]:
    broker = Broker(workdir / "startup-broker")
    broker.start()
    subscriber = Subscriber(broker.port, ["lane-agent/#", f"{MINIMAL_TOPIC}/#"])
    fifo_lane, daemons = programs(workdir, broker.port)
    measured: dict[str, dict[str, list[float]]] = {
        label: {"ready_s": [], "rss_idle_kib": []} for label in daemons
    }
    results: dict[str, Any] = {
        "starts": starts,
        "settle_s": settle,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit(),
        "python": sys.version.split()[0],
    }
    try:
        for label, daemon in daemons.items():  # the untimed round
            mark = subscriber.mark()
            daemon.start()
            daemon.wait_ready(START_TIMEOUT)
            if isinstance(daemon, LaneAgent | MinimalPeer):
                passes_a_line(daemon, subscriber, mark)
            if label == EVERY:
                time.sleep(2.0)  # the drivers' first records
                results["every driver devices"] = devices_waiting(subscriber, mark)
            daemon.stop()
        for round_ in range(starts):
            for label, daemon in daemons.items():
                daemon.start()
                ready = daemon.wait_ready(START_TIMEOUT)
                time.sleep(settle)
                daemon.check_alive()
                measured[label]["ready_s"].append(round((ready - daemon.started_ns) / 1e9, 3))
                measured[label]["rss_idle_kib"].append(rss_kib(daemon.pid))
                if round_ == starts - 1 and label in (FIFO, EVERY, MINIMAL):
                    results.setdefault("smaps_kib", {})[label] = top_mappings(daemon.pid)
                daemon.stop()
        for label, values in measured.items():
            results[label] = {k: spread(v) for k, v in values.items()} | {"each": values}
        results["rss_steps"] = rss_steps(fifo_lane, settle)
    finally:
        stop_all(*daemons.values())
        subscriber.close()
        broker.stop()
    return results


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def passes_a_line(daemon: Notifying, subscriber: Subscriber, mark: int) -> None:
    """A line written to the daemon's named pipe must come out on MQTT: each one measured is a
    working pipe-to-MQTT daemon, not merely a process that said READY."""
    if isinstance(daemon, LaneAgent):
        fifo, topic = daemon.workdir / "scan.fifo", "lane-agent/"
    else:
        fifo, topic = daemon.workdir / "scan.fifo", f"{MINIMAL_TOPIC}/scan"
    wait_pipe(fifo)
    feeder = Feeder(fifo)
    feeder.write([b"96385074"])
    feeder.close()

    def carries(message: Received) -> bool:
        return message.topic.startswith(topic) and b"96385074" in message.payload

    if subscriber.wait_for(carries, 30, mark) is None:
        daemon.check_alive()
        raise RuntimeError(f"{daemon.name} said READY but published nothing from its pipe")


def devices_waiting(subscriber: Subscriber, mark: int) -> dict[str, dict[str, Any]]:
    """The every-driver lane's device records since `mark`: the absent devices must be waiting
    (disconnected, saying so), the pipe and the UDP NFC reader connected."""
    latest: dict[str, dict[str, Any]] = {}
    for message in subscriber.since(mark):
        if message.topic.startswith("lane-agent/s1/l2/devices/"):
            record = json.loads(message.payload)
            latest[record["device_id"]] = {
                "kind": record["kind"],
                "state": record["state"],
                "last_error": record["last_error"],
            }
    for device_id in ABSENT:
        record = latest.get(device_id, {})
        if record.get("state") != "disconnected" or "waiting" not in (record["last_error"] or ""):
            raise RuntimeError(f"{device_id} is not waiting for its device: {record or 'silent'}")
    for device_id in ("pipe", "nfc"):
        if latest.get(device_id, {}).get("state") != "connected":
            raise RuntimeError(f"{device_id} did not connect: {latest.get(device_id, 'silent')}")
    return latest


def top_mappings(pid: int, keep: int = 6) -> dict[str, int]:
    """Anonymous memory, the `keep` largest mapped files, and the rest of the files together."""
    by_name = smaps_rss_kib(pid)
    anonymous = by_name.pop("anonymous", 0)
    files = sorted(by_name.items(), key=lambda item: -item[1])
    top = dict(files[:keep])
    return {
        "anonymous": anonymous,
        **top,
        "other files": sum(kib for _, kib in files[keep:]),
    }


def rss_steps(agent: LaneAgent, settle: float) -> list[list[Any]]:
    """bench/rss_steps.py on the fifo lane's own config (the lane is stopped by now)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "rss_steps.py"), str(agent.config), str(settle)],
        capture_output=True,
        text=True,
        check=True,
        timeout=START_TIMEOUT + settle,
        cwd=agent.workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    steps: list[list[Any]] = json.loads(out.stdout.splitlines()[-1])
    return steps


def commit() -> str:
    from bench.run import commit as measured

    return measured()

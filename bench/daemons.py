"""lane-agent and its peers as real processes, each started the way its own docs say.

Every daemon gets the same broker and its own work directory (config, log, state). "Ready" is
what each program offers: lane-agent's sd_notify READY=1 on a socket the bench listens on;
barcode-server has no readiness signal, so its web server accepting connections (it starts after
the device reader and the MQTT notifier); nfc2mqtt's retained `<topic>/online = 1`, which it
publishes once its reader is open and it is connected.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    REPO,
    NotifySocket,
    Subscriber,
    free_port,
    now_ns,
    wait_for_port,
    wait_until,
)

PEER_VENVS = REPO / ".venv-bench"
BARCODE_SERVER_BIN = PEER_VENVS / "barcode-server" / "bin"
NFC2MQTT_BIN = PEER_VENVS / "nfc2mqtt" / "bin"
LANE_BASE = "lane-agent/s1/l1"
BARCODE_TOPIC = "bench/barcode-server/barcode"
NFC2MQTT_TOPIC = "bench/nfc2mqtt"


def pin_to(cpu: int | None) -> Callable[[], None] | None:
    """A preexec_fn that keeps the child (and its threads) on one CPU."""
    if cpu is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


class Daemon:
    """A started program: its pid, its log, and a stop that always ends it."""

    name = "daemon"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_ns = 0

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def _spawn(self, argv: list[str], env: dict[str, str], cpu: int | None) -> None:
        log = self.log_path.open("ab")
        self.started_ns = now_ns()
        self.process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            preexec_fn=pin_to(cpu),
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited; its log:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


# The per-device scan rate limit (a policy, 20 scans/s by default) is off: the workloads
# measure capacity.
NO_RATE_LIMIT = "[scans]\nrate = 0\n"


class Notifying(Daemon):
    """A program that says READY=1 on the sd_notify socket the bench gives it (NOTIFY_SOCKET)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.notify: NotifySocket | None = None

    def start(self, cpu: int | None = None) -> None:
        raise NotImplementedError

    def _spawn_notifying(self, argv: list[str], cpu: int | None) -> None:
        """A fresh socket for each start (bound before the fork, so no READY=1 is missed): a
        READY left over from an earlier start never counts for this one."""
        if self.notify is not None:
            self.notify.close()
        self.notify = NotifySocket(self.workdir / "notify.sock")
        env = {"NOTIFY_SOCKET": str(self.notify.path), "PYTHONPATH": str(REPO)}
        self._spawn(argv, env, cpu)

    def wait_ready(self, timeout: float) -> int:
        """Seconds-resolution-free: the monotonic_ns at which READY=1 arrived."""
        assert self.notify is not None, f"{self.name} was not started"
        try:
            return self.notify.wait_ready(timeout)
        except TimeoutError:
            self.check_alive()
            raise

    def stop(self) -> None:
        super().stop()
        if self.notify is not None:
            self.notify.close()
            self.notify = None


class LaneAgent(Notifying):
    name = "lane-agent"

    def __init__(self, workdir: Path, broker_port: int, devices: str, lane: str = "l1") -> None:
        """`lane`: two agents on one broker must be two lanes (the lane is the client id)."""
        super().__init__(workdir)
        self.config = workdir / "lane.toml"
        self.config.write_text(
            f'[lane]\nstore = "s1"\nlane = "{lane}"\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
            f'[state]\ndir = "{workdir / "state"}"\n'
            f"{NO_RATE_LIMIT}[providers.sandbox]\n{devices}"
        )

    def start(self, cpu: int | None = None) -> None:
        argv = [sys.executable, "-m", "agent", "run", "--config", str(self.config)]
        self._spawn_notifying(argv, cpu)


MINIMAL_TOPIC = "bench/minimal-peer"


class MinimalPeer(Notifying):
    """bench/minimal_peer.py: a named pipe to MQTT in about 40 lines of aiomqtt, under
    lane-agent's interpreter and venv: the least any such daemon can cost."""

    name = "minimal-peer"

    def __init__(self, workdir: Path, broker_port: int, fifo: Path) -> None:
        super().__init__(workdir)
        self.argv = [
            sys.executable,
            str(REPO / "bench" / "minimal_peer.py"),
            str(broker_port),
            MINIMAL_TOPIC,
            str(fifo),
        ]

    def start(self, cpu: int | None = None) -> None:
        self._spawn_notifying(self.argv, cpu)


class ImportFloor(Notifying):
    """bench/import_floor.py: imports pydantic and aiomqtt, builds one model, says READY=1 and
    sleeps; the memory every process using those two libraries pays."""

    name = "import-floor"

    def start(self, cpu: int | None = None) -> None:
        self._spawn_notifying([sys.executable, str(REPO / "bench" / "import_floor.py")], cpu)


def lane_scan_value(topic: str, payload: bytes) -> str | None:
    """The scanned value of a lane-agent scan message (None for anything else).

    A kind whose value is secret (a voucher code, a loyalty card) is published masked, with no
    value: it stands as `masked:<kind>:<display>` so a scan garbled into such a kind (two
    EAN-8s run together are a 16-digit loyalty card) is still counted, never invisible."""
    import json

    if topic != f"{LANE_BASE}/scan":
        return None
    scan = json.loads(payload)
    if scan.get("valid") is False and scan.get("error") == "empty scan":
        return None  # the bench's lone Enter between trials
    value = scan.get("value")
    if isinstance(value, str):
        return value
    return f"masked:{scan.get('kind')}:{scan.get('display')}"


class BarcodeServer(Daemon):
    """barcode-server 2.x: evdev scanners matched by name, one MQTT connection per event."""

    name = "barcode-server"

    def __init__(self, workdir: Path, broker_port: int, device_name: str) -> None:
        super().__init__(workdir)
        self.port = free_port()
        # Its Prometheus endpoint cannot be switched off (a null port falls back to 8000) and
        # binds every address; a free port keeps it from colliding with anything.
        stats_port = free_port()
        (workdir / "barcode_server.yaml").write_text(
            "barcode_server:\n"
            "  log_level: INFO\n"
            "  id: bench\n"
            f"  server:\n    host: 127.0.0.1\n    port: {self.port}\n"
            f"  stats:\n    port: {stats_port}\n"
            f"  mqtt:\n    host: 127.0.0.1\n    port: {broker_port}\n"
            f"    topic: {BARCODE_TOPIC}\n    client_id: bench-barcode-server\n"
            f'  devices:\n    - "^{device_name}$"\n'
        )

    def start(self, cpu: int | None = None) -> None:
        # Its config is ./barcode_server.yaml, found in the working directory.
        self._spawn([str(BARCODE_SERVER_BIN / "barcode-server"), "run"], {}, cpu)

    def wait_ready(self, timeout: float) -> int:
        try:
            wait_for_port(self.port, timeout)
        except TimeoutError:
            self.check_alive()
            raise
        return now_ns()

    def wait_reading(self, device_path: str, timeout: float) -> None:
        """Until it has grabbed the keyboard (it rescans /dev/input once a second)."""
        wait_until(lambda: f"Reading: {device_path}" in self.log(), "barcode-server", timeout)
        time.sleep(0.5)  # the grab happens in the reader task right after that line


def barcode_value(topic: str, payload: bytes) -> str | None:
    import json

    if topic != BARCODE_TOPIC:
        return None
    value = json.loads(payload).get("barcode")
    return value if isinstance(value, str) else None


class Nfc2Mqtt(Daemon):
    """nfc2mqtt 0.1.x: nfcpy reader, Fernet-encrypted NDEF text records, paho MQTT v3.1."""

    name = "nfc2mqtt"

    def __init__(self, workdir: Path, broker_port: int, reader: str, key: str) -> None:
        super().__init__(workdir)
        self.config = workdir / "nfc2mqtt.yaml"
        self.config.write_text(
            f"mqtt:\n  server: 127.0.0.1\n  port: {broker_port}\n  topic: {NFC2MQTT_TOPIC}\n"
            f"nfc:\n  encrypt_key: {key}\n  reader: '{reader}'\n"
            "logging:\n  level: info\n"
        )

    def start(self, cpu: int | None = None) -> None:
        self._spawn([str(NFC2MQTT_BIN / "nfc2mqtt"), "-c", str(self.config)], {}, cpu)

    def wait_ready(self, subscriber: Subscriber, timeout: float, start: int) -> int:
        online = subscriber.wait_for(
            lambda m: m.topic == f"{NFC2MQTT_TOPIC}/online" and m.payload == b"1",
            timeout,
            start,
        )
        if online is None:
            self.check_alive()
            raise TimeoutError("nfc2mqtt never said it was online")
        return online.at_ns


def stop_all(*daemons: Daemon) -> None:
    for daemon in daemons:
        with contextlib.suppress(Exception):
            daemon.stop()

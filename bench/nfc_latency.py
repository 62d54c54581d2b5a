"""Workload 3: tag-present to MQTT latency through nfcpy's `udp` reader, lane-agent vs nfc2mqtt.

The tag (bench/nfc_tag.py, a FeliCa Type 3 tag on nfcpy's UDP simulator) carries one NDEF text
record: a Fernet token, because nfc2mqtt publishes only tags whose first text record decrypts
with its key; lane-agent reads the same record as a scan. The clock starts when the tag is put
on the reader (its socket bound, ready to answer a poll) and stops when the subscriber receives
the daemon's message for it, so the reader's polling cadence is part of the latency, as it is
for a cashier holding a card over the reader. Between samples the tag is lifted and stays off
until the daemon has noticed: lane-agent's `nfc.removed` event (after its default 1 s debounce),
nfc2mqtt's next poll (it holds the reader for 5 s after each valid tag, its "beep"); then it is
put back after a random pause (see POLL_ROUND).
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, Received, free_udp_port, summary_ms
from bench.context import START_TIMEOUT, Run
from bench.daemons import LANE_BASE, NFC2MQTT_BIN, NFC2MQTT_TOPIC, LaneAgent, Nfc2Mqtt, stop_all

TAG_ID = "bench01"
# nfcpy's udp driver waits 1 s for an answer to each poll (106A, 106B, 212F) when no tag is on
# it: an empty poll round takes 3 s. A tag is put on after a random pause up to that long, so
# it lands anywhere in the round, not always at the same phase of it.
POLL_ROUND = 3.0
TIMEOUT = 60.0


def fernet_tag(workdir: Path) -> tuple[str, str]:
    """A Fernet key and the tag text nfc2mqtt writes for id `bench01`, never expiring.

    Made with nfc2mqtt's own dependency (cryptography, in its virtualenv), which lane-agent's
    environment does not carry."""
    code = (
        "from cryptography.fernet import Fernet\n"
        "key = Fernet.generate_key()\n"
        f"print(key.decode()); print(Fernet(key).encrypt(b'{TAG_ID} 0').decode())\n"
    )
    out = subprocess.run(
        [str(NFC2MQTT_BIN / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], out[1]


class Tag:
    """The emulator process, driven line by line (each wait bounded)."""

    def __init__(self, port: int, text: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.nfc_tag", "--port", str(port), "--text", text],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _command(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def expect(self, event: str, timeout: float) -> int:
        """monotonic_ns of the emulator's next `event` line."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"the tag emulator never said {event!r}") from None
            if not line:
                raise EOFError(f"the tag emulator exited before {event!r}")
            name, _, at = line.strip().partition(" ")
            if name == event:
                return int(at)

    def present(self) -> int:
        self._command("present")
        return self.expect("listening", 30)

    def lift(self) -> None:
        self._command("lift")
        self.expect("lifted", TIMEOUT)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def sample(
    run: Run,
    tag: Tag,
    is_read: Callable[[Received], bool],
    removed: Callable[[Received], bool] | None,
    count: int,
) -> dict[str, Any]:
    """`count` presentations after one warm-up: latency from tag on the reader to message."""
    latencies: list[int] = []
    lost = 0
    started = time.monotonic()
    pause = random.Random(6)  # the same pauses for every daemon
    for _ in range(count + 1):
        time.sleep(pause.uniform(0, POLL_ROUND))
        mark = run.subscriber.mark()
        placed = tag.present()
        got = run.subscriber.wait_for(is_read, TIMEOUT, mark)
        if got is None:
            lost += 1
        else:
            latencies.append(got.at_ns - placed)
        mark = run.subscriber.mark()
        tag.lift()
        if removed is not None and run.subscriber.wait_for(removed, TIMEOUT, mark) is None:
            raise TimeoutError("lane-agent never reported the tag removed")
    return {**summary_ms(latencies[1:]), "lost": lost, "seconds": round(time.monotonic() - started)}


def run_workload(run: Run, count: int) -> dict[str, Any]:
    key, text = fernet_tag(run.workdir)
    results: dict[str, Any] = {"count": count, "record_bytes": len(text)}

    def lane_read(m: Received) -> bool:
        return m.topic == f"{LANE_BASE}/scan" and json.loads(m.payload)["device_id"] == "nfc"

    def lane_removed(m: Received) -> bool:
        return m.topic == f"{LANE_BASE}/event" and json.loads(m.payload)["type"] == "nfc.removed"

    port = free_udp_port()
    tag = Tag(port, text)
    device = f'[devices.nfc]\ntype = "nfc"\npath = "udp:localhost:{port}"\n'
    agent = LaneAgent(run.workdir / "nfc-lane-agent", run.broker.port, device)
    try:
        agent.start()
        agent.wait_ready(START_TIMEOUT)
        results["lane-agent"] = sample(run, tag, lane_read, lane_removed, count)
    finally:
        stop_all(agent)
        tag.close()

    def peer_read(m: Received) -> bool:
        return m.topic == f"{NFC2MQTT_TOPIC}/tag/{TAG_ID}"

    port = free_udp_port()
    tag = Tag(port, text)
    peer = Nfc2Mqtt(run.workdir / "nfc-nfc2mqtt", run.broker.port, f"udp:localhost:{port}", key)
    try:
        mark = run.subscriber.mark()
        peer.start()
        peer.wait_ready(run.subscriber, START_TIMEOUT, mark)
        results["nfc2mqtt"] = sample(run, tag, peer_read, None, count)
    finally:
        stop_all(peer)
        tag.close()
    return results

"""barcode-server's scan-event-to-MQTT path, driven in-process (run by its own interpreter).

    .venv-bench/barcode-server/bin/python bench/peer_publish.py PORT TOPIC COUNT CPU

barcode-server publishes each scan through `MQTTNotifier._send_event`: serialise with orjson,
open an MQTT connection, publish at QoS 2, close. This calls exactly that, COUNT times, pinned
to one CPU, and prints one JSON line with the rate. Only the standard library and barcode-server
are imported: this file runs under Python 3.13 in the peer's virtualenv, not in lane-agent's.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from types import SimpleNamespace


def main() -> None:
    port, topic, count, cpu = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    os.sched_setaffinity(0, {cpu})
    # Its config insists on a device pattern even though no device is read here.
    os.environ.setdefault("BARCODE_SERVER_DEVICES", "Bench Barcode Scanner")
    from barcode_server.barcode import BarcodeEvent  # type: ignore[import-not-found]
    from barcode_server.notifier.mqtt import MQTTNotifier  # type: ignore[import-not-found]

    device = SimpleNamespace(
        name="Bench Barcode Scanner",
        path="/dev/input/event0",
        info=SimpleNamespace(vendor=0x0C2E, product=0x0BE0),
    )

    async def drive() -> float:
        notifier = MQTTNotifier(host="127.0.0.1", port=int(port), topic=topic)
        for i in range(20):  # warm-up, not counted by the caller's subscriber either way
            await notifier._send_event(BarcodeEvent(device, f"w{i}"))
        started = time.perf_counter()
        for i in range(count - 20):
            await notifier._send_event(BarcodeEvent(device, f"{i:08d}"))
        return time.perf_counter() - started

    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = asyncio.run(drive())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    n = count - 20
    print(
        json.dumps(
            {
                "scans": n,
                "seconds": round(seconds, 2),
                "per_s": round(n / seconds, 1),
                "cpu_ms_per_scan": round(cpu_s * 1000 / n, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

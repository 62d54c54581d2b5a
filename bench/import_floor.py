"""The memory floor under lane-agent: a process that imports pydantic and aiomqtt, builds and
serialises one model, says READY=1 to NOTIFY_SOCKET and sleeps until killed. Every lane daemon
written with those two libraries pays at least this much (`make bench`, host start-up lines).
"""

from __future__ import annotations

import os
import signal
import socket

import aiomqtt  # noqa: F401  (imported for its cost only)
import pydantic


class Scan(pydantic.BaseModel):
    device_id: str
    value: str
    valid: bool = True


def main() -> None:
    Scan(device_id="pipe", value="96385074").model_dump_json()
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"READY=1", address)
    signal.pause()


if __name__ == "__main__":
    main()

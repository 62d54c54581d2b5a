"""The least a lane daemon can be, for `make bench`'s host start-up and memory lines: lines from a
named pipe to MQTT with aiomqtt, a retained `online` once connected (a will says `offline`), and
sd_notify READY=1 after connecting, as lane-agent does. No config, no validation, no normaliser,
no state, no reconnect: our own code, not a product; lane-agent's floor on the same interpreter.

    python bench/minimal_peer.py PORT TOPIC FIFO      (NOTIFY_SOCKET set by the caller)
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import BinaryIO

import aiomqtt


def open_fifo(path: str) -> BinaryIO:
    if not os.path.exists(path):
        os.mkfifo(path, 0o620)
    return os.fdopen(os.open(path, os.O_RDWR | os.O_NONBLOCK), "rb", buffering=0)


async def main(port: int, topic: str, pipe: BinaryIO) -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    will = aiomqtt.Will(f"{topic}/state", b"offline", qos=1, retain=True)
    async with aiomqtt.Client("127.0.0.1", port, identifier="minimal-peer", will=will) as client:
        await client.publish(f"{topic}/state", b"online", qos=1, retain=True)
        notify(b"READY=1")
        while line := await reader.readline():
            await client.publish(f"{topic}/scan", line.rstrip(b"\n"), qos=1)


def notify(message: bytes) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, address)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], open_fifo(sys.argv[3])))

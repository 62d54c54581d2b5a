"""A FeliCa (NFC Forum Type 3) tag on nfcpy's UDP simulator: the tag side of `udp:<host>:<port>`,
so NFC reader code runs against real nfcpy on both ends, without hardware.

nfcpy's `examples/tagtool.py emulate tt3` is not in the wheel; this is its Type 3 emulation (same
memory layout and default IDm) plus the controls a test needs. It runs as its own process because
nfcpy's card loop blocks and only notices a stop between commands:

    python tests/nfc_tag_emulator.py --port 54321 --uri https://giftlocal.com/v/demo-gift-50

Lines on stdin: `lift` takes the tag off the reader (it stops answering), `present` puts it back;
end of input exits. Lines on stdout: `listening` (the tag is on the reader), `activated` (a reader
selected it), `checked` (a reader checked that it is still there), `released` (the reader let go)
and `lifted` (the reader noticed that the tag is gone). Without records the tag is blank: it was
never formatted for NDEF and only has its IDm. `EmulatedTag` drives the process from async tests.

The tag presents itself as a FeliCa Standard chip with the slowest response times in its PMm
(tagtool's default is a FeliCa Plug): nfcpy then checks its presence with RequestResponse and a
0.3 s timeout instead of a 3.6 ms Polling, which a busy test machine misses, and the reader would
see the tag leave when it did not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import ndef  # type: ignore[import-untyped]
import nfc
import nfc.clf

DEFAULT_IDM = "03FEFFE011223344"
PMM = "0101FFFFFFFFFFFF"  # FeliCa Standard (RC-S915), every response time at its maximum
NDEF_SYSTEM = "12FC"  # a blank tag keeps it: a Polling for another system resets nfcpy's listener
NDEF_READ_SERVICE = 0x000B
BLOCK = 16


def type3_memory(records: Sequence[Any]) -> bytes:
    """Attribute block then NDEF blocks of a read-only Type 3 tag, as tagtool lays them out."""
    message = b"".join(ndef.message_encoder(records))
    blocks = max(1, -(-len(message) // BLOCK))
    attributes = bytearray(BLOCK)
    attributes[0] = 0x10  # NDEF mapping version 1.0
    attributes[1] = attributes[2] = 1  # blocks per read and per write
    attributes[3:5] = blocks.to_bytes(2, "big")  # Nmaxb
    attributes[10] = 0  # RWFlag: read-only
    attributes[11:14] = len(message).to_bytes(3, "big")
    attributes[14:16] = sum(attributes[:14]).to_bytes(2, "big")
    return bytes(attributes) + message.ljust(blocks * BLOCK, b"\0")


class Type3Tag:
    """The tag: answers a reader until lifted, then waits for the reader to notice."""

    def __init__(
        self, port: int, idm: str, memory: bytes | None, say: Callable[[str], None]
    ) -> None:
        self.port = port
        self.sensf_res = bytes.fromhex("01" + idm + PMM + NDEF_SYSTEM)
        self.memory = memory
        self.lift = threading.Event()
        self.say = say

    def serve(self) -> None:
        """Answer readers until `lift` is set."""
        clf = nfc.ContactlessFrontend(f"udp:localhost:{self.port}")
        self.say("listening")
        options = {
            "on-startup": self._on_startup,
            "on-connect": self._on_connect,
            "on-release": self._on_release,
        }
        try:
            while not self.lift.is_set():
                clf.connect(card=options, terminate=self.lift.is_set)
        finally:
            clf.close()

    def wait_until_noticed(self) -> None:
        """Hold the port, silent, until the reader shows that it saw the tag go: it switches its
        field off (nfcpy's UDP reader sends `RFOFF`) or polls for any tag again (system FFFF)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("0.0.0.0", self.port))
            while True:
                frame = sock.recv(1024)
                if frame.startswith(b"RFOFF") or b" 0600ffff" in frame:
                    break
        self.say("lifted")

    def _on_startup(self, target: Any) -> Any:
        target.brty = "212F"
        target.sensf_res = bytearray(self.sensf_res)
        return target

    def _on_connect(self, tag: Any) -> bool:
        self.say("activated")
        if self.memory is not None:
            tag.add_service(NDEF_READ_SERVICE, self._read_block, None)
        for check in ("polling", "request_response"):  # nfcpy's two presence checks
            setattr(tag, check, self._reporting(getattr(tag, check)))
        return True

    def _reporting(
        self, answer: Callable[[bytearray], bytearray]
    ) -> Callable[[bytearray], bytearray]:
        def answer_and_report(command: bytearray) -> bytearray:
            self.say("checked")
            return answer(command)

        return answer_and_report

    def _read_block(self, number: int, first: bool, last: bool) -> bytes | None:
        assert self.memory is not None
        return self.memory[number * BLOCK : (number + 1) * BLOCK] or None

    def _on_release(self, tag: Any) -> bool:
        if not self.lift.is_set():
            self.say("released")
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description="Emulate an NFC Forum Type 3 tag over UDP.")
    parser.add_argument("--port", type=int, default=54321)
    parser.add_argument("--idm", default=DEFAULT_IDM, help="8-byte IDm in hex: the tag's UID")
    parser.add_argument("--uri", action="append", default=[], help="a URI record (repeatable)")
    parser.add_argument("--text", action="append", default=[], help="a text record (repeatable)")
    args = parser.parse_args()
    records = [ndef.UriRecord(u) for u in args.uri] + [ndef.TextRecord(t) for t in args.text]

    def say(line: str) -> None:
        print(line, flush=True)

    tag = Type3Tag(args.port, args.idm, type3_memory(records) if records else None, say)
    present = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "lift":
                tag.lift.set()
            elif line.strip() == "present":
                present.set()
        os._exit(0)  # the controller is gone; nfcpy may be blocked in a receive

    threading.Thread(target=commands, daemon=True).start()
    while True:
        tag.serve()
        tag.wait_until_noticed()
        present.wait()
        present.clear()
        tag.lift.clear()


class EmulatedTag:
    """The emulator process for async tests: every wait is on a line it prints, with a timeout."""

    def __init__(
        self,
        port: int,
        *,
        idm: str = DEFAULT_IDM,
        uris: Sequence[str] = (),
        texts: Sequence[str] = (),
    ) -> None:
        self.uid = bytes.fromhex(idm)
        self._args = ["--port", str(port), "--idm", idm]
        self._args += [a for u in uris for a in ("--uri", u)]
        self._args += [a for t in texts for a in ("--text", t)]
        self._process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> EmulatedTag:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__)),
            *self._args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        await self.expect("listening")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.remove()

    async def expect(self, line: str) -> None:
        """Wait (5 s at most) until the emulator prints `line`, skipping the lines before it."""
        assert self._process is not None and self._process.stdout is not None
        async with asyncio.timeout(5):
            while (got := await self._process.stdout.readline()) != f"{line}\n".encode():
                if not got:
                    raise EOFError(f"the tag emulator exited before printing {line!r}")

    async def lift(self) -> None:
        """Take the tag off the reader that selected it; returns once the reader has noticed."""
        await self._command("lift")
        await self.expect("lifted")

    async def present(self) -> None:
        await self._command("present")
        await self.expect("listening")

    async def remove(self) -> None:
        """Take the tag away for good: the process is killed, as abruptly as a tag is yanked."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()

    async def _command(self, command: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(f"{command}\n".encode())
        await self._process.stdin.drain()


if __name__ == "__main__":
    main()

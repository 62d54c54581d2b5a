"""The bench's NFC tag: tests/nfc_tag_emulator.py's Type 3 tag, with a clock on every line.

    python -m bench.nfc_tag --port 54321 --text <record>

Same stdin commands as the test emulator (`lift`, `present`); each stdout line is the event and
the monotonic_ns it happened at, so `listening <ns>` is the instant the tag is on the reader
(its UDP socket is bound and it answers the next poll): where tag-present latency starts.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

import ndef  # type: ignore[import-untyped]

from bench.common import now_ns
from tests.nfc_tag_emulator import DEFAULT_IDM, Type3Tag, type3_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--text", required=True, help="the tag's one NDEF text record")
    args = parser.parse_args()

    def say(line: str) -> None:
        print(f"{line} {now_ns()}", flush=True)

    tag = Type3Tag(args.port, DEFAULT_IDM, type3_memory([ndef.TextRecord(args.text)]), say)
    present = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "lift":
                tag.lift.set()
            elif line.strip() == "present":
                present.set()
        os._exit(0)  # the bench is gone; nfcpy may be blocked in a receive

    threading.Thread(target=commands, daemon=True).start()
    present.wait()  # the first presentation is the bench's to time, too
    while True:
        present.clear()
        tag.lift.clear()
        tag.serve()
        tag.wait_until_noticed()
        present.wait()


if __name__ == "__main__":
    main()

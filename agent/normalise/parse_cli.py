"""`lane-agent parse`: escaped raw scans in, one JSON object per line out (brief §5)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TextIO

from agent.normalise.escapes import unescape
from agent.normalise.kinds import token_json
from agent.normalise.normaliser import Normaliser


def run_parse(
    lines: Iterable[str],
    out: TextIO,
    normaliser: Normaliser,
    symbology_hint: str | None = None,
) -> int:
    """Normalise each line (blank lines included: they are empty scans) and return how many were
    invalid, so the command can exit non-zero."""
    invalid = 0
    for line in lines:
        token = normaliser.normalise(unescape(line.rstrip("\r\n")), symbology_hint)
        out.write(json.dumps(token_json(token), ensure_ascii=False) + "\n")
        invalid += not token.valid
    return invalid

"""The agent's own latest log lines, kept for the support bundle: bounded, escaped."""

from __future__ import annotations

import logging

from agent.logs import RecentLog


def test_keeps_only_the_latest_lines_escaped() -> None:
    recent = RecentLog(lines=3)
    log = logging.getLogger("agent.test.recent")
    log.addHandler(recent)
    log.propagate = False
    try:
        for n in range(5):
            log.warning("line %d %s", n, "\x1b]0;owned\x07")
    finally:
        log.removeHandler(recent)
        log.propagate = True
    lines = recent.text().splitlines()
    assert [line.split("line ")[1][:1] for line in lines] == ["2", "3", "4"]
    assert all("\x1b" not in line and "\\x1b]0;owned\\x07" in line for line in lines)

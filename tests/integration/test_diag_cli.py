"""`lane-agent diag monitor|health|bundle` as a technician runs them (host side; devices that
need a kernel are covered in tests/hardware)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.conftest import REPO, Broker, write_config


def config_with_fifo(tmp_path: Path, broker: Broker) -> tuple[Path, Path]:
    fifo = tmp_path / "scan.fifo"
    device = f'[devices.tech]\ntype = "fifo"\npath = "{fifo}"\n'
    return write_config(tmp_path / "lane.toml", broker.port, extra=device), fifo


async def test_monitor_shows_each_scan_and_what_it_becomes(tmp_path: Path, broker: Broker) -> None:
    config, fifo = config_with_fifo(tmp_path, broker)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agent", "diag", "monitor", "tech", "--config", str(config),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert b"monitoring devices.tech (fifo)" in await proc.stdout.readline()
            assert b"device connected" in await proc.stdout.readline()
            await asyncio.to_thread(fifo.write_text, "]E05901234123457\n")
            line = (await proc.stdout.readline()).decode()
        assert "SCAN ']E05901234123457' -> product_gtin (ean13, valid)" in line
        proc.send_signal(signal.SIGINT)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def diag(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "diag", *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip


def test_health_reports_every_check_and_fails_when_the_broker_is_down(
    tmp_path: Path, broker: Broker
) -> None:
    config, fifo = config_with_fifo(tmp_path, broker)
    fifo.parent.mkdir(exist_ok=True)
    ok = diag("health", "--config", str(config))
    assert "broker" in ok.stdout and "provider sandbox" in ok.stdout
    broker.stop()
    down = diag("health", "--config", str(config))
    assert down.returncode == 1
    assert f"FAIL  cannot connect to 127.0.0.1:{broker.port}" in down.stdout


def test_bundle_holds_config_versions_and_devices_without_secrets(
    tmp_path: Path, broker: Broker
) -> None:
    config, _ = config_with_fifo(tmp_path, broker)
    config.write_text(config.read_text() + '\n# token = "leaked-by-hand"\n')
    result = diag("bundle", "--config", str(config), "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    archive = next(tmp_path.glob("lane-agent-bundle-*.tar.gz"))
    with tarfile.open(archive) as tar:
        names = {Path(m.name).name for m in tar.getmembers()}
        member = tar.extractfile("lane-agent-bundle/config.toml")
        assert member is not None
        text = member.read().decode()
    assert {"config.toml", "versions.txt", "devices.txt", "health.txt", "journal.txt"} <= names
    assert "leaked-by-hand" not in text and 'token = "<redacted>"' in text

"""`lane-agent diag`: what a technician runs at a lane where "the scanner does nothing".

`devices` lists the hardware, which config entry claims each device and, for one that cannot be
opened, why and the exact fix; `monitor` shows what a device sends, live, so a wrong keyboard
layout or a missing Enter suffix is visible at a glance; `health` runs every check the daemon
can; `providers` tries every endpoint each provider uses, so a wrong path shows on day one;
`bundle` packs it all, with recent logs, into one archive for support.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import aiomqtt

from agent import __version__
from agent.app import build_driver, build_provider
from agent.bus import tls_context
from agent.config import Config, DeviceSettings, FifoDeviceSettings
from agent.errors import LaneError
from agent.normalise import Normaliser, escape
from agent.providers.http import ChecksEndpoints
from agent.registry import ProviderEnv
from agent.secrets import read_secret
from agent.unit_policy import UNIT, UnitPolicy, installed_policy, service_access
from drivers.base import (
    DriverEvent,
    DroppedInput,
    HealthLevel,
    RawScan,
    StatusChange,
    TagRead,
    TagRemoved,
)
from drivers.discovery import USBFS_NOTE, Found, holders, input_devices, serial_ports, usb_devices
from drivers.keyboard import KeyboardScanner, Node, select_nodes
from drivers.settings import HidPosSettings, KeyboardSettings, NfcSettings, SerialSettings


def _usb_matches(found: Found, vendor: int | None, product: int | None) -> bool:
    if found.usb_id is None:
        return False
    have = [int(part, 16) for part in found.usb_id.split(":")]
    return vendor in (None, have[0]) and product in (None, have[1])


def _claims(found: Found, settings: DeviceSettings) -> bool:
    match settings:
        case KeyboardSettings():
            node = Node(found.path, found.name, found.usb_id or "", "")
            return found.bus == "input" and bool(select_nodes(settings, [node]))
        case SerialSettings():
            return found.bus == "serial" and os.path.realpath(settings.port) == found.path
        case HidPosSettings():
            hidpos = any("HID-POS" in note for note in found.notes)
            # Held through libusb (by the running agent, say): named by its ids alone.
            held = USBFS_NOTE in found.notes and settings.vendor_id is not None
            return (hidpos or held) and _usb_matches(found, settings.vendor_id, settings.product_id)
        case NfcSettings():
            parts = settings.path.split(":")
            if parts[0] == "tty" and len(parts) >= 2:  # nfcpy's tty:ACM0:pn532 form
                return found.bus == "serial" and found.path == f"/dev/tty{parts[1]}"
            if parts[0] != "usb" or not any("NFC reader" in note for note in found.notes):
                return False
            if len(parts) == 3 and len(parts[1]) == 3:  # nfcpy's usb:BUS:DEV form
                return found.path == f"/dev/bus/usb/{parts[1]}/{parts[2]}"
            ids = [int(p, 16) for p in parts[1:3]] + [None, None]
            return _usb_matches(found, ids[0], ids[1])
        case FifoDeviceSettings():
            return found.path == str(settings.path)


def claimant(found: Found, devices: dict[str, DeviceSettings]) -> str | None:
    """The config entry that would use this device, if any."""
    return next((d for d, settings in devices.items() if _claims(found, settings)), None)


NFC = "NFC readers"
NFC_NONE = (
    ": a USB reader nfcpy drives shows here when plugged in; a serial one (PN532 on a UART) "
    'once the config names it, e.g. path = "tty:USB0:pn532"'
)


def _is_nfc(found: Found, devices: dict[str, DeviceSettings]) -> bool:
    """A USB reader nfcpy knows, or a serial port the config names as an NFC reader."""
    if any("NFC reader" in note for note in found.notes):
        return True
    owner = claimant(found, devices)
    return owner is not None and isinstance(devices[owner], NfcSettings)


def inventory(devices: dict[str, DeviceSettings] | None = None) -> dict[str, list[Found]]:
    """Every device by section; NFC readers (USB, or serial ones the config names) have their
    own, since to a technician a reader is not "some USB device"."""
    devices = devices or {}
    serial, usb = serial_ports(), usb_devices()
    return {
        "Input devices (keyboard-wedge scanners)": input_devices(),
        "Serial ports": [f for f in serial if not _is_nfc(f, devices)],
        NFC: [f for f in usb + serial if _is_nfc(f, devices)],
        "USB devices": [f for f in usb if not _is_nfc(f, devices)],
    }


def _service_line(policy: UnitPolicy | None, found: Found, owner: str | None) -> str | None:
    """Whether the installed unit lets the service open a device that matters to the lane: one
    the config names, or a reader of a kind the lane uses."""
    relevant = owner is not None or any(
        "NFC reader" in note or "HID-POS" in note for note in found.notes
    )
    if policy is None or not relevant or not Path(found.path).exists():
        return None
    return service_access(policy, found.path, write=found.bus != "input")


def _held_by_service(policy: UnitPolicy | None, found: Found) -> Found:
    """A device the running service holds (grabbed, claimed) is in use as it should be, not a
    problem: say so, and what to do before `diag monitor`."""
    pid = policy.main_pid if policy is not None else None
    if pid is None or not Path(found.path).exists():
        return found
    if found.problem is None and USBFS_NOTE not in found.notes:
        return found
    if pid not in {holder for holder, _ in holders(found.path)}:
        return found
    note = (
        f"in use by {UNIT} (PID {pid}), as it should be while the service runs; "
        "`systemctl stop lane-agent` before `lane-agent diag monitor`"
    )
    return dataclasses.replace(found, problem=None, notes=(*found.notes, note))


def print_devices(config: Config | None, out: TextIO, as_json: bool = False) -> int:
    """Print every device; exit status 1 when a configured device is missing or unusable."""
    devices = dict(config.devices) if config is not None else {}
    policy = installed_policy()
    sections = {
        title: [_held_by_service(policy, f) for f in found]
        for title, found in inventory(devices).items()
    }
    claimed: dict[str, Found] = {}
    trouble = 0
    if as_json:
        payload = {
            title: [
                {
                    **asdict(f),
                    "claimed_by": claimant(f, devices),
                    "service": _service_line(policy, f, claimant(f, devices)),
                }
                for f in found
            ]
            for title, found in sections.items()
        }
        json.dump(payload, out, indent=2)
        out.write("\n")
    for title, found in sections.items():
        if not as_json:
            out.write(f"{title}:\n")
            if not found:
                out.write(f"  (none{NFC_NONE if title == NFC else ''})\n")
        for f in found:
            owner = claimant(f, devices)
            if owner is not None:
                claimed[owner] = f
                trouble += f.problem is not None
            if as_json:
                continue
            ids = f" [{f.usb_id}]" if f.usb_id else ""
            out.write(f"  {f.path}  {f.name}{ids}\n")
            for link in f.links:
                out.write(f"      link: {link}\n")
            for note in f.notes:
                out.write(f"      {note}\n")
            for key, value in f.extra.items():
                out.write(f"      {key}: {value}\n")
            if owner is not None:
                out.write(f"      used by config: devices.{owner}\n")
            service = _service_line(policy, f, owner)
            if service is not None:
                out.write(f"      {service}\n")
            if f.problem is not None:
                out.write(f"      CANNOT OPEN: {f.problem.reason}\n      fix: {f.problem.fix}\n")
    if as_json:
        return 1 if trouble else 0
    missing = [
        d for d, s in devices.items() if d not in claimed and not isinstance(s, FifoDeviceSettings)
    ]
    if devices:
        out.write("Configured devices:\n")
        for device_id, settings in devices.items():
            if device_id in claimed:
                at = claimed[device_id]
                status = "problem (see above)" if at.problem else "found"
                out.write(f"  devices.{device_id} ({settings.type}): {status} at {at.path}\n")
            elif device_id in missing:
                out.write(
                    f"  devices.{device_id} ({settings.type}): NOT FOUND; check the cable and the "
                    "selection keys in the config, or watch it with `lane-agent diag monitor "
                    f"{device_id}` while plugging it in\n"
                )
            else:
                out.write(f"  devices.{device_id} ({settings.type}): {settings}\n")
    return 1 if missing or trouble else 0


def describe_event(event: DriverEvent, started: float, normaliser: Normaliser) -> str:
    """One monitor line: timing, what the device delivered, and what the normaliser made of it."""
    stamp = f"+{time.monotonic() - started:8.3f}s"
    if isinstance(event, RawScan):
        token = normaliser.normalise(event.data, event.symbology)
        verdict = "valid" if token.valid else f"INVALID: {token.error}"
        return (
            f"{stamp}  SCAN {escape(event.data)!r} -> {token.kind} ({token.symbology}, {verdict})"
        )
    if isinstance(event, StatusChange):
        why = f": {event.error}" if event.error else ""
        return f"{stamp}  device {event.state.value}{why}"
    if isinstance(event, DroppedInput):
        return f"{stamp}  DROPPED input: {event.reason}"
    if isinstance(event, TagRead):
        records = ", ".join(r.text or r.type for r in event.records) or "no NDEF records"
        return f"{stamp}  TAG {event.tag_type} uid={event.uid.hex()} {records}"
    if isinstance(event, TagRemoved):
        return f"{stamp}  tag removed uid={event.uid.hex()}"
    return f"{stamp}  {event!r}"


async def monitor(
    config: Config,
    device_id: str,
    out: TextIO,
    *,
    grab: bool,
    stop: asyncio.Event,
    trace: Callable[[str], None] | None = None,
) -> int:
    """Run one configured device's driver (the daemon must not hold it) and print its events."""
    settings = config.devices.get(device_id)
    if settings is None:
        known = ", ".join(config.devices) or "none configured"
        out.write(f"no device '{device_id}' in the config ({known})\n")
        return 2
    if isinstance(settings, KeyboardSettings) and not grab:
        settings = settings.model_copy(update={"grab": False})
    driver = build_driver(device_id, settings)
    if isinstance(driver, KeyboardScanner):
        driver.trace = trace
    normaliser = Normaliser(config.normaliser)
    started = time.monotonic()
    out.write(f"monitoring devices.{device_id} ({settings.type}); Ctrl-C to stop\n")
    out.flush()

    async def pump() -> None:
        async for event in driver.events():
            out.write(describe_event(event, started, normaliser) + "\n")
            out.flush()

    task = asyncio.create_task(pump())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopped):
        t.cancel()
    results = await asyncio.gather(task, stopped, return_exceptions=True)
    error = results[0]
    if isinstance(error, Exception):
        out.write(f"device failed: {error}\n")
        return 1
    return 0


async def broker_check(config: Config) -> tuple[bool, str]:
    where = f"{config.mqtt.host}:{config.mqtt.port}"
    password = read_secret(config.mqtt.password_file, "mqtt_password")
    try:
        tls = tls_context(config.mqtt)
    except LaneError as exc:
        return False, exc.message
    try:
        async with (
            asyncio.timeout(10),
            aiomqtt.Client(
                config.mqtt.host,
                config.mqtt.port,
                username=config.mqtt.username,
                password=password.reveal() if password else None,
                identifier=f"lane-agent-diag-{os.getpid()}",
                timeout=5,
                tls_context=tls,
            ),
        ):
            return True, f"connected to {where}"
    except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
        return False, f"cannot connect to {where}: {exc or type(exc).__name__}"


async def health(config: Config, out: TextIO) -> int:
    rows: list[tuple[str, bool, str]] = []
    for device_id, settings in config.devices.items():
        driver = build_driver(device_id, settings)
        for level in (HealthLevel.INTERNAL, HealthLevel.EXTERNAL):
            report = await driver.check_health(level)
            rows.append((f"device {device_id} ({level.value})", report.ok, report.detail))
    rows.append(("broker", *(await broker_check(config))))
    env = ProviderEnv(config.lane.store, config.lane.lane, config.state_dir())
    for name in config.configured_providers():
        try:
            provider = build_provider(config, name, env)
        except LaneError as exc:
            rows.append((f"provider {name}", False, exc.message))
            continue
        try:
            rows.append((f"provider {name}", *(await provider.check_health())))
        finally:
            await provider.aclose()
    width = max(len(name) for name, _, _ in rows)
    for name, ok, detail in rows:
        out.write(f"{name:<{width}}  {'OK  ' if ok else 'FAIL'}  {detail}\n")
    return 0 if all(ok for _, ok, _ in rows) else 1


async def providers(config: Config, out: TextIO) -> int:
    """Each configured provider's endpoints, each tried with a call that moves nothing, and
    what answered; a provider that cannot try its endpoints one by one runs its health check."""
    env = ProviderEnv(config.lane.store, config.lane.lane, config.state_dir())
    failed = 0
    names = config.configured_providers()
    if not names:
        out.write("no providers configured\n")
    for name in names:
        out.write(f"provider {name}:\n")
        try:
            provider = build_provider(config, name, env)
        except LaneError as exc:
            out.write(f"  FAIL  not started: {exc.message}\n")
            failed += 1
            continue
        try:
            if isinstance(provider, ChecksEndpoints):
                for check in await provider.check_endpoints():
                    mark = "OK  " if check.ok else "FAIL"
                    out.write(f"  {mark}  {check.method} {check.path}  {check.endpoint}\n")
                    out.write(f"        {check.detail}\n")
                    failed += not check.ok
            else:
                ok, detail = await provider.check_health()
                out.write(f"  {'OK  ' if ok else 'FAIL'}  health check: {detail}\n")
                failed += not ok
        finally:
            await provider.aclose()
    return 1 if failed else 0


# Commented-out lines count too: a key pasted in and "disabled" with # is still a leak.
_SECRET_LINE = re.compile(
    r"^(\s*#?\s*[\w.-]*(?:password|secret|token|api_key|key)\s*=\s*).*$", re.I
)


def redact(text: str) -> str:
    """Config files hold no secrets by design; redact anything that looks like one anyway."""
    return "\n".join(_SECRET_LINE.sub(r'\1"<redacted>"', line) for line in text.splitlines())


def _command(args: list[str]) -> str:
    if shutil.which(args[0]) is None:
        return f"({args[0]} not available)\n"
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({' '.join(args)} failed: {exc})\n"
    return result.stdout + result.stderr


def versions() -> str:
    lines = [
        f"lane-agent {__version__}",
        f"python {sys.version.split()[0]} ({sys.executable})",
        f"platform {platform.platform()}",
    ]
    for dist in (
        "aiomqtt",
        "paho-mqtt",
        "pydantic",
        "evdev",
        "pyserial",
        "pyusb",
        "nfcpy",
        "httpx",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            lines.append(f"{dist} {importlib.metadata.version(dist)}")
    return "\n".join(lines) + "\n"


def bundle_files(
    config_path: Path,
    config: Config | None,
    health_text: str | None,
    recent_log: str | None = None,
) -> dict[str, str]:
    """What a support bundle holds, file name -> text; no secrets, no clear codes. Blocking
    (it runs journalctl and dmesg). `recent_log`: the running agent's own latest lines, which
    it has even where its sandbox hides the journal."""
    files: dict[str, str] = {"versions.txt": versions()}
    try:
        files["config.toml"] = redact(config_path.read_text(encoding="utf-8"))
    except OSError as exc:
        files["config.toml"] = f"(cannot read {config_path}: {exc.strerror})\n"
    devices = io.StringIO()
    print_devices(config, devices)
    files["devices.txt"] = devices.getvalue()
    if health_text is not None:
        files["health.txt"] = health_text
    files["journal.txt"] = _command(
        ["journalctl", "-u", "lane-agent", "-n", "5000", "--no-pager", "-o", "short-iso"]
    )
    files["dmesg.txt"] = _command(["dmesg", "--time-format", "iso"])[-200_000:]
    if recent_log is not None:
        files["recent-log.txt"] = recent_log
    return files


def archive(files: dict[str, str]) -> bytes:
    """The files as one .tar.gz, under lane-agent-bundle/."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"lane-agent-bundle/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def bundle_name() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"lane-agent-bundle-{platform.node()}-{stamp}.tar.gz"


def bundle(config_path: Path, config: Config | None, target: Path) -> Path:
    """One archive a technician can send to support; no secrets, no clear codes."""
    health_text = None
    if config is not None:
        report = io.StringIO()
        asyncio.run(health(config, report))
        health_text = report.getvalue()
    if target.is_dir():
        target = target / bundle_name()
    target.write_bytes(archive(bundle_files(config_path, config, health_text)))
    return target

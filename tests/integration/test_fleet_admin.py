"""Running lanes from the central broker: `lane-agent fleet` (the real command, as a process)
against the documented central broker, two store brokers bridged to it (docs/fleet/) and five real
lane agents in each store, each kept running as systemd's unit would (Restart=on-failure,
RestartPreventExitStatus=2). And the store ACL: a lane's own screens cannot call `admin.*`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.config import EXIT_CONFIG
from agent.rollout import EXIT_RESTART
from tests.conftest import REPO, WAIT, AgentProcess, Probe
from tests.integration.secure_broker import (
    OBSERVER,
    Clients,
    Pki,
    SecureBroker,
    base,
    lane_config,
    password_file,
)
from tests.integration.test_fleet import (  # noqa: F401  (fixtures)
    SERVICE,
    CentralBroker,
    bridge_state,
    bridged_store,
    central,
    operations,
)

STORES = ("s1", "s2")
LANES = ("l1", "l2", "l3", "l4", "l5")


@dataclass
class Unit:
    """A lane agent as systemd runs it: started again when it exits with a status other than 0
    and 2; `exits` records every status."""

    config: Path
    log: Path
    exits: list[int] = field(default_factory=list)
    _process: asyncio.subprocess.Process | None = None
    _task: asyncio.Task[None] | None = None

    def start(self, **extra_env: str) -> None:
        self._task = asyncio.create_task(self._run(extra_env))

    async def _run(self, extra_env: dict[str, str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra_env}
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        while True:
            with self.log.open("ab") as log:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "agent",
                    "run",
                    "--config",
                    str(self.config),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    env=env,
                )
            code = await self._process.wait()
            self.exits.append(code)
            if code in (0, EXIT_CONFIG):
                return

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGKILL)
            await self._process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def units() -> AsyncIterator[Callable[..., Unit]]:
    """`units(config, log, **env)`: a started unit; all are stopped at teardown."""
    made: list[Unit] = []

    def make(config: Path, log: Path, **env: str) -> Unit:
        made.append(Unit(config, log))
        made[-1].start(**env)
        return made[-1]

    yield make
    for unit in made:
        await unit.stop()


def central_config(path: Path, broker: CentralBroker) -> Path:
    """The operator's central.toml: the [mqtt] table of a lane, for the fleet identity."""
    cert, key = broker.pki.client(SERVICE)
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.service_port}\n'
        'client_id = "svc-fleet-cli"\n'
        f'[mqtt.tls]\nca_file = "{broker.pki.ca}"\ncert_file = "{cert}"\nkey_file = "{key}"\n'
    )
    return path


def bundled_config(output: str) -> str:
    """The config.toml in the bundle `fleet bundle` says it wrote."""
    path = Path(output.split()[1])
    with tarfile.open(fileobj=io.BytesIO(path.read_bytes())) as tar:
        member = tar.extractfile("lane-agent-bundle/config.toml")
        assert member is not None
        return member.read().decode()


async def fleet_cli(central_toml: Path, *args: str) -> tuple[int, str]:
    """`lane-agent fleet --config central.toml ARGS`, as the operator runs it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent",
        "fleet",
        "--config",
        str(central_toml),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    async with asyncio.timeout(WAIT * 8):
        out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


def ls(output: str) -> dict[str, dict[str, object]]:
    rows = [json.loads(line) for line in output.splitlines()]
    return {f"{row['store']}/{row['lane']}": row for row in rows}


def fleet_config(broker: SecureBroker, tls: str = "", log_level: str = "info") -> str:
    """One config for every lane of the store, as an operator keeps it: the user name is the
    lane id, the password the systemd credential, the state directory systemd's."""
    return (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.lane_port}\nusername = "${{lane}}"\n'
        "reconnect_min = 0.05\nreconnect_max = 0.5\n"
        f'[mqtt.tls]\nca_file = "{broker.pki.ca}"\n{tls}'
        f'[log]\nlevel = "{log_level}"\n'
        "[providers.sandbox]\n"
    )


@pytest.fixture
def stores(
    tmp_path: Path,
    pki: Pki,
    central: CentralBroker,  # noqa: F811
) -> Iterator[dict[str, SecureBroker]]:
    """The brokers of STORES, each with users for LANES, bridged straight to `central`."""
    brokers: dict[str, SecureBroker] = {}
    try:
        for store in STORES:
            brokers[store] = bridged_store(
                tmp_path / store, pki, central, central.store_port, store, LANES
            )
        yield brokers
    finally:
        for broker in brokers.values():
            broker.stop()


@pytest.fixture
async def services(central: CentralBroker) -> AsyncIterator[Clients]:  # noqa: F811
    made = Clients(central)
    yield made
    await made.close()


def start_lane(
    directory: Path, broker: SecureBroker, store: str, lane: str, units: Callable[..., Unit]
) -> Unit:
    """A lane as its systemd unit runs it: the store's config with its ids, the broker password
    as a systemd credential, systemd's state directory."""
    (directory / "credentials").mkdir(parents=True)
    secret = password_file(directory / "credentials", broker, lane)
    secret.rename(directory / "credentials" / "mqtt_password")
    config = directory / "lane.toml"
    config.write_text(
        f'[lane]\nstore = "{store}"\nlane = "{lane}"\n'
        + fleet_config(broker).replace("${lane}", lane)
    )
    return units(
        config,
        directory / "agent.log",
        STATE_DIRECTORY=str(directory / "state"),
        CREDENTIALS_DIRECTORY=str(directory / "credentials"),
    )


async def test_the_operators_day_over_two_store_bridges_with_ten_lanes(
    tmp_path: Path,
    central: CentralBroker,  # noqa: F811
    stores: dict[str, SecureBroker],
    services: Clients,
    units: Callable[..., Unit],
) -> None:
    ops = await operations(services)
    for store in STORES:
        await bridge_state(ops, b"1", store=store)
    lanes = {
        (store, lane): start_lane(tmp_path / f"{store}-{lane}", broker, store, lane, units)
        for store, broker in stores.items()
        for lane in LANES
    }
    for store, lane in lanes:

        def healthy(topic: str, info: dict[str, Any], where: str = f"{store}/{lane}") -> bool:
            return topic == f"lane-agent/{where}/info" and bool(info["health"]["ok"])

        # Ten agents start at once, on a machine that may have two cores.
        await ops.wait_for(healthy, within=WAIT * 2)
    toml = central_config(tmp_path / "central.toml", central)
    every = {f"{store}/{lane}" for store, lane in lanes}

    # ls: every lane of both stores through its store's bridge, online, with version and config.
    code, out = await fleet_cli(toml, "ls", "--json")
    assert code == 0, out
    seen = ls(out)
    assert set(seen) == every
    for row in seen.values():
        assert row["state"] == "online" and row["version"] and row["bridge"] == "up", row
        assert row["health"] == "ok" and row["outbox_pending"] == 0, row
    original = {where: seen[where]["config_hash"] for where in every}

    # A config check-config refuses changes nothing anywhere, and the rollout stops at once.
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt]\nport = 0\n[providers.sandbox]\n")
    code, out = await fleet_cli(toml, "apply", str(bad), "--store", "s2")
    assert code == 1, out
    assert out.splitlines()[0].startswith("s2/l1  REFUSED  config refused, nothing changed"), out
    assert "mqtt.port: must be 1..65535" in out and "4 not tried" in out

    # A config that passes check-config but cannot start (a TLS client certificate that is no
    # certificate) is rolled back by the lane itself; the canary stops the rollout.
    garbage = tmp_path / "not-a-cert.pem"
    garbage.write_text("not a certificate\n")
    unstartable = tmp_path / "unstartable.toml"
    unstartable.write_text(fleet_config(stores["s1"], tls=f'cert_file = "{garbage}"\n'))
    code, out = await fleet_cli(toml, "apply", str(unstartable), "--store", "s1", "--canary", "1")
    assert code == 1, out
    lines = out.splitlines()
    assert lines[0].startswith("s1/l1  ROLLED BACK  cannot start: mqtt.tls.cert_file"), out
    assert lines[1] == "stopped: 0 applied, l1 failed, 4 not tried", out
    assert EXIT_RESTART in lanes["s1", "l1"].exits  # it left to be started again with the old one
    _, rolled = await ops.wait_for(
        lambda t, d: t == "lane-agent/s1/l1/event" and d["type"] == "config.rolled_back"
    )
    assert rolled["data"]["restored_hash"] == original["s1/l1"]

    # A good config to two lanes of the other store: the canary first, then the other, each
    # back online and healthy.
    good = tmp_path / "good.toml"
    good.write_text(fleet_config(stores["s2"], log_level="debug"))
    code, out = await fleet_cli(
        toml, "apply", str(good), "--store", "s2", "--lanes", "l1,l2", "--canary", "1"
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("s2/l1  applied  config"), out
    assert lines[1] == "canary lanes healthy; applying to the other 1", out
    assert lines[2].startswith("s2/l2  applied  config") and lines[3] == "done: 2 lane(s)", out
    await ops.wait_for(lambda t, d: t == "lane-agent/s2/l2/event" and d["type"] == "config.applied")

    # A support bundle from a lane of the first store, in chunks through its bridge.
    code, out = await fleet_cli(toml, "bundle", "s1/l2", "-o", str(tmp_path))
    assert code == 0, out
    assert out.startswith(f"wrote {tmp_path}/s1-l2-lane-agent-bundle-"), out
    assert 'store = "s1"\nlane = "l2"' in bundled_config(out)

    # Afterwards: the two lanes applied to run the new config, every other lane (the rolled
    # back one too) the one it started with, and all are online.
    code, out = await fleet_cli(toml, "ls", "--json")
    seen = ls(out)
    assert set(seen) == every and all(row["state"] == "online" for row in seen.values()), out
    applied = {"s2/l1", "s2/l2"}
    assert all(seen[where]["config_hash"] != original[where] for where in applied), out
    assert all(seen[where]["config_hash"] == original[where] for where in every - applied), out

    # Every admin op was audited as an event that reached the central side.
    audits = [
        json.loads(p)["data"]["op"]
        for t, p, _ in ops.messages
        if t.endswith("/event") and json.loads(p)["type"] == "admin.audit"
    ]
    assert audits.count("admin.config.apply") >= 4 and "admin.diag.bundle" in audits


async def test_a_lanes_screen_cannot_call_admin_ops(
    tmp_path: Path, clients: Clients, agents: Callable[[Path], AgentProcess]
) -> None:
    """Under the documented store ACL: the agent, running as lane user l1, answers its screen's
    ordinary requests but never receives one of its admin.* requests."""
    broker = clients.broker
    assert isinstance(broker, SecureBroker)
    L1 = base("l1")
    # Not as l1: the broker binds that user to the agent's connection.
    watcher: Probe = await clients.connect(OBSERVER, f"{L1}/#", base_topic=L1)
    agent = agents(
        lane_config(
            tmp_path / "lane.toml", broker, password_file=password_file(tmp_path, broker, "l1")
        )
    )
    agent.start()
    await watcher.topic("state", lambda d: d["state"] == "online")
    pos = await clients.connect("pos-l1", f"{L1}/#", transport="websockets")
    for op in ("admin.restart", "admin.config.get", "admin.config.apply", "admin.diag.bundle"):
        await pos.client.publish(
            f"{L1}/request/{op}", json.dumps({"request_id": f"screen-{op}"}), qos=1
        )
    # The screen's next request is answered: anything the broker let through before it was too.
    answer = await pos.request("device.health", {})
    assert answer["status"] == "ok"
    # The watcher has everything the agent published before that answer (the broker keeps a
    # subscriber's messages in the order it accepted them).
    await watcher.wait_for(
        lambda t, d: (
            t == f"{L1}/response/device.health" and d.get("request_id") == answer["request_id"]
        )
    )
    assert not [t for t, _, _ in watcher.messages if "/response/admin." in t]
    assert not [t for t, _, _ in watcher.messages if "/request/admin." in t]
    assert b"admin.audit" not in b"".join(p for _, p, _ in watcher.messages)
    assert agent.process is not None and agent.process.poll() is None

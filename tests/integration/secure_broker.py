"""A mosquitto run from the documented security set-up in docs/security/: the broker config, the
ACL and the certificate script exactly as shipped, with test ports, test paths and a throwaway CA.

The substitutions are checked: if the documented files change shape (a listener moves, a path is
renamed), the tests fail here instead of quietly testing something else.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import aiomqtt
import pytest

from tests.conftest import (
    REPO,
    WAIT,
    AgentProcess,
    Probe,
    free_port,
    mosquitto_binary,
    wait_for_port,
)

SECURITY = REPO / "docs" / "security"
BROKER_CONF = SECURITY / "lane-agent.conf"
ACL = SECURITY / "lane-agent.acl"
PKI_SCRIPT = SECURITY / "lane-pki.sh"

STORE = "s1"
ETC = "/etc/mosquitto/"
LANE_LISTENER = "listener 8883"
POS_LISTENER = "listener 9001"
CERT_SWITCHES = ("require_certificate", "use_identity_as_username")


def base(lane: str) -> str:
    return f"lane-agent/{STORE}/{lane}"


# Tests only: a user that reads every lane's topics, requests included, to see everything the
# agent publishes (the lane's own user cannot: the broker binds it to the agent's client id).
OBSERVER = "observer"
OBSERVER_ACL = f"\nuser {OBSERVER}\ntopic read lane-agent/#\n"


def lane_passwords(*lanes: str) -> dict[str, str]:
    """Fresh passwords for the users of the documented ACL (store s1, lanes l1 and l2), for
    lane l10, whose id begins with another lane's, for the test's observer, and for `lanes`."""
    users = ("l1", "l2", "l10", "pos-l1", "pos-l2", OBSERVER, *lanes)
    return {user: f"mqtt-pw-{user}-{secrets.token_hex(12)}" for user in users}


def need(command: str, package: str) -> str:
    found = shutil.which(command)
    if found is None:
        pytest.fail(f"{command} is not installed: apt-get install {package}")
    return found


def run(*args: str | Path) -> None:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"


@dataclass(frozen=True)
class Pki:
    """A CA made by docs/security/lane-pki.sh, with the broker's certificate for 127.0.0.1."""

    dir: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        need("openssl", "openssl")
        run("sh", PKI_SCRIPT, "ca", directory)
        run("sh", PKI_SCRIPT, "server", directory, "lane-broker", "DNS:localhost", "IP:127.0.0.1")
        return cls(directory)

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def client(self, cn: str) -> tuple[Path, Path]:
        """A lane's client certificate and key; the CN is its MQTT user name."""
        if not (self.dir / f"{cn}.crt").exists():
            run("sh", PKI_SCRIPT, "client", self.dir, cn)
        return self.dir / f"{cn}.crt", self.dir / f"{cn}.key"


def substitute(text: str, source: str, pattern: str, new: str, count: int | None = 1) -> str:
    """`text` (the documented file `source`) with the multi-line regex `pattern` replaced by
    `new`; fails unless it matched `count` times (None: at least once), so a documented file that
    changes shape fails the test instead of quietly testing something else."""
    text, n = re.subn(pattern, new, text, flags=re.MULTILINE)
    assert n >= 1 if count is None else n == count, (
        f"{source}: expected {count or 'some'} match(es) of {pattern!r}, found {n}"
    )
    return text


def render_config(
    text: str, root: Path, lane_port: int, pos_port: int, *, client_certificates: bool
) -> str:
    """The documented mosquitto.conf with the test's paths and loopback ports."""
    name = BROKER_CONF.name
    text = substitute(text, name, re.escape(ETC), f"{root}/", count=None)
    text = substitute(text, name, rf"^{LANE_LISTENER}$", f"listener {lane_port} 127.0.0.1")
    text = substitute(text, name, rf"^{POS_LISTENER}$", f"listener {pos_port} 127.0.0.1")
    for switch in CERT_SWITCHES:
        text = substitute(
            text, name, rf"^{switch} false$", f"{switch} {str(client_certificates).lower()}"
        )
    return text


def start_mosquitto(workdir: Path, conf: str, *ports: int) -> subprocess.Popen[bytes]:
    """mosquitto with `conf` (saved as workdir/mosquitto.conf, its log in mosquitto.log), once it
    listens on every one of `ports`."""
    # Test only: started as root, mosquitto switches to the user 'mosquitto', which cannot read
    # the test's private temporary directory. As any other user this line does nothing.
    path = workdir / "mosquitto.conf"
    path.write_text(f"user {getpass.getuser()}\n{conf}")
    log = (workdir / "mosquitto.log").open("ab")
    process = subprocess.Popen(
        [mosquitto_binary(), "-c", str(path)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        for port in ports:
            wait_for_port(port)
    except TimeoutError:
        process.terminate()
        process.wait(timeout=10)
        log_text = (workdir / "mosquitto.log").read_text(errors="replace")
        raise AssertionError(f"mosquitto did not start:\n{log_text}") from None
    return process


@dataclass
class SecureBroker:
    """mosquitto with docs/security/lane-agent.conf and lane-agent.acl, TLS from `pki`; `conf` is
    added to the config (a bridge, say), `acl` to the ACL after the test observer's block. The
    ACL is store s1's; for another `store` its id replaces s1's, as the file says to."""

    workdir: Path
    pki: Pki
    passwords: dict[str, str]
    store: str = STORE
    client_certificates: bool = False
    conf: str = ""
    acl: str = ""
    lane_port: int = field(default_factory=free_port)
    pos_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = self.workdir / "etc-mosquitto"
        (root / "certs").mkdir(parents=True, exist_ok=True)
        (root / "ca_certificates").mkdir(exist_ok=True)
        shutil.copy(self.pki.ca, root / "ca_certificates" / "lane-ca.crt")
        for suffix in ("crt", "key"):
            shutil.copy(self.pki.dir / f"lane-broker.{suffix}", root / "certs")
        acl = substitute(
            ACL.read_text(), ACL.name, rf"lane-agent/{STORE}/", f"lane-agent/{self.store}/", None
        )
        (root / "lane-agent.acl").write_text(acl + OBSERVER_ACL + self.acl)
        passwd = root / "lane-agent.passwd"
        passwd.unlink(missing_ok=True)
        mosquitto_passwd = need("mosquitto_passwd", "mosquitto")
        for n, (user, password) in enumerate(self.passwords.items()):
            run(mosquitto_passwd, *(["-c"] if n == 0 else []), "-b", passwd, user, password)
        conf = render_config(
            BROKER_CONF.read_text(),
            root,
            self.lane_port,
            self.pos_port,
            client_certificates=self.client_certificates,
        )
        self.process = start_mosquitto(
            self.workdir, conf + self.conf, self.lane_port, self.pos_port
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def log(self) -> str:
        return (self.workdir / "mosquitto.log").read_text(errors="replace")

    def tls_context(self, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        if cert is not None:
            context.load_cert_chain(*cert)
        return context

    def client(
        self,
        user: str | None,
        *,
        transport: Literal["tcp", "websockets"] = "tcp",
        cert: tuple[Path, Path] | None = None,
        identifier: str | None = None,
    ) -> aiomqtt.Client:
        """A client for a lane (tcp, port 8883's stand-in) or a POS screen (websockets)."""
        port = self.pos_port if transport == "websockets" else self.lane_port
        return aiomqtt.Client(
            "127.0.0.1",
            port,
            identifier=identifier,
            username=user,
            password=self.passwords.get(user) if user else None,
            protocol=aiomqtt.ProtocolVersion.V5,
            transport=transport,
            tls_context=self.tls_context(cert),
            timeout=10,
        )


class Connects(Protocol):
    """A broker the tests log in to as `user`."""

    def client(
        self, user: str | None, *, transport: Literal["tcp", "websockets"] = "tcp"
    ) -> aiomqtt.Client: ...


@dataclass
class Clients:
    """Connected clients and probes, all closed at teardown."""

    broker: Connects
    _open: list[tuple[aiomqtt.Client, asyncio.Task[None]]] = field(default_factory=list)

    async def connect(
        self,
        user: str,
        *subscriptions: str,
        transport: Literal["tcp", "websockets"] = "tcp",
        base_topic: str | None = None,
    ) -> Probe:
        """Log in as `user`, subscribe, and collect everything the broker delivers."""
        client = self.broker.client(user, transport=transport)
        await client.__aenter__()
        probe = Probe(client, base_topic or base(user.removeprefix("pos-")))
        for topic in subscriptions:
            await client.subscribe(topic, qos=1)
        self._open.append((client, asyncio.create_task(probe._collect())))
        return probe

    async def close(self) -> None:
        for client, task in self._open:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.__aexit__(None, None, None)


def lane_config(
    path: Path,
    broker: SecureBroker,
    *,
    lane: str = "l1",
    password_file: Path | None = None,
    ca_file: Path | None = None,
    tls: str = "",
    extra: str = "",
    mqtt: str = "",
    log_level: str = "info",
) -> Path:
    """An agent config for `lane` on the secure broker (TLS with the test CA); `mqtt` is added
    to the `[mqtt]` table, `extra` after the sandbox provider's."""
    login = f'username = "{lane}"\npassword_file = "{password_file}"\n' if password_file else ""
    path.write_text(
        f'[lane]\nstore = "{STORE}"\nlane = "{lane}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.lane_port}\n{login}{mqtt}'
        "reconnect_min = 0.05\nreconnect_max = 0.5\n"
        f'[mqtt.tls]\nca_file = "{ca_file or broker.pki.ca}"\n{tls}'
        f'[state]\ndir = "{path.parent / "state"}"\n'
        f'[log]\nlevel = "{log_level}"\n'
        f"[providers.sandbox]\n{extra}"
    )
    return path


def password_file(directory: Path, broker: SecureBroker, user: str) -> Path:
    path = directory / f"{user}.mqtt_password"
    path.write_text(broker.passwords[user] + "\n")
    path.chmod(0o600)
    return path


async def log_until(agent: AgentProcess, done: Callable[[str], bool]) -> str:
    """The agent's log once `done(log)` holds (another process writes it: poll the file)."""
    async with asyncio.timeout(WAIT):
        while not done(log := agent.log()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return log

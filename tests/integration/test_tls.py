"""TLS to the broker with a real mosquitto started from docs/security/lane-agent.conf and a
throwaway CA made by docs/security/lane-pki.sh: a lane logging in with a client certificate (its
key from a systemd credential), and the failures a technician meets (a wrong CA, no client
certificate, an unusable TLS file) said clearly instead of a crash loop.

User name and password over TLS, the documented default, runs in test_security.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.config import EXIT_CONFIG
from tests.conftest import REPO, WAIT, AgentProcess
from tests.integration.secure_broker import (
    Clients,
    Pki,
    SecureBroker,
    base,
    lane_config,
    log_until,
    password_file,
)
from tests.integration.test_lane_agent import MONETARY

Agents = Callable[[Path], AgentProcess]
L1 = base("l1")


@pytest.fixture
def cert_broker(tmp_path: Path, pki: Pki, secure_broker: SecureBroker) -> Iterator[SecureBroker]:
    """The documented config with client certificates switched on for lanes."""
    broker = SecureBroker(
        tmp_path / "cert-broker", pki, secure_broker.passwords, client_certificates=True
    )
    broker.start()
    yield broker
    broker.stop()


async def retries(agent: AgentProcess, times: int = 3) -> str:
    """The agent's log once it has failed to connect `times` times."""
    return await log_until(agent, lambda log: log.count("reconnecting in") >= times)


def still_running(agent: AgentProcess) -> bool:
    return agent.process is not None and agent.process.poll() is None


async def test_a_lane_logs_in_with_a_client_certificate_whose_key_is_a_credential(
    tmp_path: Path, cert_broker: SecureBroker, agents: Agents
) -> None:
    cert, key = cert_broker.pki.client("l1")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_tls_key").write_bytes(key.read_bytes())
    # As systemd/README.md says: the certificate is a plain file, its key the credential
    # mqtt_tls_key, found in $CREDENTIALS_DIRECTORY when mqtt.tls.key_file is not set.
    config = lane_config(tmp_path / "lane.toml", cert_broker, tls=f'cert_file = "{cert}"\n')
    agent = agents(config)
    screens = Clients(cert_broker)
    try:
        pos1 = await screens.connect("pos-l1", f"{L1}/#", transport="websockets")
        agent.start(CREDENTIALS_DIRECTORY=str(credentials))
        await pos1.topic("state", lambda d: d["state"] == "online")
        answer = await pos1.request("scan.inject", {"data": MONETARY})
        assert answer["status"] == "ok", answer
        await pos1.topic("event", lambda d: d["type"] == "gift.validated")
    finally:
        await screens.close()
    # The broker took the lane's identity from the certificate's CN, so the ACL applied to l1.
    assert "u'l1'" in cert_broker.log()
    assert "Traceback" not in agent.log()


async def test_without_a_client_certificate_the_log_says_the_broker_wants_one(
    tmp_path: Path, cert_broker: SecureBroker, agents: Agents
) -> None:
    config = lane_config(
        tmp_path / "lane.toml",
        cert_broker,
        password_file=password_file(tmp_path, cert_broker, "l1"),
    )
    agent = agents(config)
    agent.start()
    log = await log_until(agent, lambda log: "CERTIFICATE_REQUIRED" in log)
    assert still_running(agent), log
    assert "Traceback" not in log


async def test_a_broker_certificate_from_another_ca_is_a_clear_error_not_a_crash_loop(
    tmp_path: Path, secure_broker: SecureBroker, agents: Agents
) -> None:
    other = Pki.create(tmp_path / "other-pki")
    config = lane_config(
        tmp_path / "lane.toml",
        secure_broker,
        password_file=password_file(tmp_path, secure_broker, "l1"),
        ca_file=other.ca,
    )
    agent = agents(config)
    agent.start()
    log = await retries(agent)
    assert still_running(agent), log
    assert "CERTIFICATE_VERIFY_FAILED" in log, log
    assert "Traceback" not in log
    assert secure_broker.passwords["l1"] not in log


@pytest.mark.parametrize(
    ("what", "tls"),
    [
        ("a CA file that is no certificate", 'ca_file = "{junk}"\n'),
        ("a key that does not match the certificate", 'cert_file = "{cert}"\nkey_file = "{key}"\n'),
    ],
)
def test_an_unusable_tls_file_stops_the_agent_with_a_config_error(
    tmp_path: Path, secure_broker: SecureBroker, what: str, tls: str
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cert, _ = secure_broker.pki.client("l1")
    _, other_key = secure_broker.pki.client("l2")
    settings = tls.format(junk=junk, cert=cert, key=other_key)
    config = lane_config(tmp_path / "lane.toml", secure_broker, tls=settings)
    if "ca_file" in settings:  # replace the good CA line instead of adding a second one
        text = config.read_text()
        config.write_text(text.replace(f'ca_file = "{secure_broker.pki.ca}"\n', "", 1))
    result = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        cwd=REPO,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == EXIT_CONFIG, f"{what}: {output}"
    assert "mqtt.tls" in output, output
    assert "Traceback" not in output

"""A lane configured for a provider whose key is missing refuses to start, saying what to set,
with the exit status systemd does not restart on."""

from __future__ import annotations

import signal
from pathlib import Path

from agent.config import EXIT_CONFIG
from tests.conftest import AgentProcess, Broker, write_config


def test_provider_without_its_key_stops_the_agent_with_the_fix(
    tmp_path: Path, broker: Broker
) -> None:
    extra = '[providers.kseries]\nbase_url = "http://127.0.0.1:9"\npayment_method_code = "GC"\n'
    agent = AgentProcess(
        write_config(tmp_path / "lane.toml", broker.port, extra=extra), tmp_path / "agent.log"
    )
    agent.start(CREDENTIALS_DIRECTORY=str(tmp_path / "no-credentials"))
    assert agent.process is not None
    try:
        code = agent.process.wait(timeout=60)
    finally:
        if agent.process.poll() is None:
            agent.signal(signal.SIGKILL)
    assert code == EXIT_CONFIG
    assert "providers.kseries.api_key_file: key missing" in agent.log()
    assert "LoadCredential=kseries_api_key" in agent.log() and "Traceback" not in agent.log()

"""Where keys come from: the service's credentials directory, or, for a command a technician
runs outside the service, the credential store the unit loads them from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import secrets
from tests.conftest import REPO


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    etc, run = tmp_path / "etc-credstore", tmp_path / "run-credstore"
    etc.mkdir()
    run.mkdir()
    monkeypatch.setattr(secrets, "CREDSTORE_DIRS", (etc, run))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return etc, run


def test_outside_the_service_the_credential_store_is_read(stores: tuple[Path, Path]) -> None:
    etc, run = stores
    (run / "lane-agent.giftlocal_api_key").write_text("from-run")
    assert secrets.credential_path("giftlocal_api_key") == run / "lane-agent.giftlocal_api_key"
    (etc / "lane-agent.giftlocal_api_key").write_text("from-etc")  # /etc first, as systemd
    assert secrets.credential_path("giftlocal_api_key") == etc / "lane-agent.giftlocal_api_key"
    assert secrets.credential_path("petz_api_key") is None


def test_inside_the_service_only_its_credentials_count(
    stores: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc, _ = stores
    (etc / "lane-agent.giftlocal_api_key").write_text("from-etc")
    creds = tmp_path / "creds"
    creds.mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert secrets.credential_path("giftlocal_api_key") is None
    (creds / "giftlocal_api_key").write_text("loaded")
    assert secrets.credential_path("giftlocal_api_key") == creds / "giftlocal_api_key"


def test_the_unit_loads_each_credential_under_the_name_the_store_lookup_uses() -> None:
    unit = (REPO / "systemd" / "lane-agent.service").read_text()
    lines = re.findall(r"^LoadCredential=(.*)$", unit, re.MULTILINE)
    assert lines
    for line in lines:
        credential, _, source = line.partition(":")
        assert source == f"{secrets.CREDSTORE_PREFIX}{credential}", line

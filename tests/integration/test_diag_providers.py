"""`lane-agent diag providers` as a technician runs it on day one: every endpoint of every
configured provider tried against the PETZ and card API simulators on loopback, a wrong path
named as such, and nothing moved at the providers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from simulators.petz import DEFAULT_KEY
from tests.conftest import REPO, Broker, Simulators, sim_get, write_config
from tests.integration.test_seed_card_payment import kseries_toml


async def test_a_wrong_petz_order_path_shows_on_day_one(
    tmp_path: Path, broker: Broker, simulators: Simulators
) -> None:
    petz, cards = simulators.start("petz"), simulators.start("kseries")
    key = tmp_path / "petz.key"
    key.write_text(DEFAULT_KEY)
    tables = (
        f'[providers.petz]\nbase_url = "{petz.url}"\napi_key_file = "{key}"\n'
        'order_path = "/posface/orders/set/"\ncapture_path = "/posface/auth/redeem/"\n'
        + kseries_toml(tmp_path, cards)
    )
    config = write_config(tmp_path / "lane.toml", broker.port, extra=tables)
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "agent", "diag", "providers", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "provider petz:" in lines and "provider kseries:" in lines
    failed = [line for line in lines if line.lstrip().startswith("FAIL")]
    assert failed == ["  FAIL  POST /posface/orders/set/  order sync (order_path, not in seed 001)"]
    assert "no such endpoint" in run.stdout
    for path in ("/posface/customer/set/", "/posface/auth/create/", "/posface/auth/redeem/"):
        assert f"  OK    POST {path}" in run.stdout
    assert "  OK    POST /v1/cards/lookup" in run.stdout
    assert "  OK    GET /v1/redemptions" in run.stdout
    assert "health check:" in run.stdout  # the sandbox, which has no endpoints to try
    petz_ledger, card_ledger = await sim_get(petz), await sim_get(cards)
    assert (petz_ledger["authorizations"], petz_ledger["redemptions"]) == ({}, [])
    assert (card_ledger["redemptions"], card_ledger["reversals"]) == ({}, {})

"""Disk full (issue 5): the agent's state directory on a small real tmpfs, filled up while the
agent runs. Card payments go on until one is refused; every debit the card service made is one
the POS was told about (at once, or when it sent the refused request again after space was
freed), exactly once. Needs root to mount the tmpfs, as the hardware tier does."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators import giftlocal
from simulators.giftlocal import BAKERY_KEY
from simulators.kseries import API_KEY
from simulators.server import Running
from tests.conftest import (
    REPO,
    AgentFactory,
    AgentProcess,
    Simulators,
    sim_faults,
    sim_get,
    write_config,
)
from tests.integration.test_crash import until
from tests.integration.test_lane_agent import ProbeFactory, started
from tests.integration.test_orders import order
from tests.integration.test_seed_card_payment import CARD_5000, ok
from tests.integration.test_seed_gift_local import giftlocal_toml

PAYMENTS = 150  # at 10 cents each: far more writes than the WAL has room for once it is full
VOUCHER = "100000000001"  # Gift Local, bakery account: 50.00 USD


class SmallDisk:
    """A tmpfs mounted where the agent keeps its state, and a file that fills it up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT)
        try:
            for block in (65536, 4096, 1):  # down to the last byte
                try:
                    while True:
                        os.write(fd, bytes(block))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (make test does, as CI)")
    state = tmp_path / "state"  # conftest.write_config's state directory
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], check=True)
    yield SmallDisk(state)
    subprocess.run(["umount", "--lazy", str(state)], check=True)


@pytest.fixture
def card_api(simulators: Simulators) -> Running:
    return simulators.start("kseries")


@pytest.fixture
def lane(
    tmp_path: Path, small_disk: SmallDisk, lane_agents: AgentFactory, card_api: Running
) -> AgentProcess:
    key = tmp_path / "kseries.key"
    key.write_text(API_KEY)
    return lane_agents(
        f'[providers.kseries]\nbase_url = "{card_api.url}"\napi_key_file = "{key}"\n'
        'payment_method_code = "GIFTCARD"\ntimeout = 3\n'
    )


async def test_a_full_disk_refuses_payments_clearly_and_loses_or_doubles_none(
    lane: AgentProcess, small_disk: SmallDisk, probe_factory: ProbeFactory, card_api: Running
) -> None:
    probe = await started(lane, probe_factory)
    ok(await probe.request("order.update", order("D1", 2000)))
    token = ok(await probe.request("scan.inject", {"data": CARD_5000}))["token_id"]
    small_disk.fill()

    told: dict[str, str] = {}  # request_id → transaction id the POS was given
    refused = None
    for k in range(PAYMENTS):
        pay = {"request_id": f"D1-pay{k}", "token_id": token, "amount": 10}
        answer = await probe.request("gift.redeem", pay)
        if answer["status"] == "error":
            refused = (pay, answer["error"])
            break
        told[pay["request_id"]] = answer["data"]["card"]["transaction_id"]
    assert refused is not None, f"{PAYMENTS} payments went through on a full disk"
    pay, error = refused
    assert error["code"] == "storage_full", error
    assert "disk is full" in error["message"] and "send the same request again" in error["message"]
    log = lane.log()
    assert f"no space left for the agent's records in {small_disk.path}" in log
    assert "Traceback" not in log
    assert lane.process is not None and lane.process.poll() is None  # still serving

    small_disk.free()
    again = ok(await probe.request("gift.redeem", pay))  # the refusal was not kept as the answer
    told[str(pay["request_id"])] = again["card"]["transaction_id"]
    assert ok(await probe.request("gift.redeem", pay)) == again  # and now it is

    debits = list((await sim_get(card_api))["redemptions"].values())
    by_request = {d["reference"].rsplit(":", 1)[-1]: d["id"] for d in debits}
    assert len(by_request) == len(debits), "two debits under one request"
    assert by_request == told  # each debit is one the POS was told about, none more, none less
    paid = ok(await probe.request("order.paid", {"order_id": "D1"}))
    assert paid["order"]["status"] == "paid"


async def test_a_disk_filled_during_a_redeem_never_answers_storage_full_for_it(
    tmp_path: Path,
    small_disk: SmallDisk,
    lane_agents: AgentFactory,
    simulators: Simulators,
    probe_factory: ProbeFactory,
) -> None:
    """The disk fills while Gift Local applies the redeem (its answer is slow): the POS and
    every screen are told the redemption, its amount and transaction id, never `storage_full`
    (Gift Local has no idempotency key: a cashier told it failed takes it again). No other
    voucher step is made until it is recorded; once space is freed, it is."""
    gift_api = simulators.start("giftlocal")
    probe = await started(
        lane_agents(giftlocal_toml(tmp_path, gift_api, BAKERY_KEY)), probe_factory
    )
    token = ok(await probe.request("scan.inject", {"data": VOUCHER}))["token_id"]
    seeded = set((await sim_get(gift_api))["redemptions"])
    await sim_faults(gift_api, {"path": giftlocal.REDEEM, "kind": "slow", "delay": 1.0})
    before = len(await sim_get(gift_api, "requests"))

    async def redeem_sent() -> bool:
        return any(
            r["path"] == giftlocal.REDEEM for r in (await sim_get(gift_api, "requests"))[before:]
        )

    redeem = {"request_id": "G1-redeem", "token_id": token, "amount": 300}
    answer = asyncio.create_task(probe.request("gift.redeem", redeem))
    await until(redeem_sent)
    small_disk.fill()
    redemption = ok(await answer)["redemption"]
    [taken] = set((await sim_get(gift_api))["redemptions"]) - seeded
    assert (redemption["transaction_id"], redemption["amount"]) == (taken, 300)
    event = await probe.topic("event", lambda e: e["type"] == "gift.redeemed")
    assert event["data"]["redemption"] == redemption and event["data"]["request_id"] == "G1-redeem"
    assert ok(await probe.request("gift.redeem", redeem))["redemption"] == redemption

    second = {"request_id": "G1-second", "token_id": token, "amount": 200}
    assert (await probe.request("gift.redeem", second))["error"]["code"] == "storage_full"
    assert set((await sim_get(gift_api))["redemptions"]) - seeded == {taken}
    small_disk.free()
    made = ok(await probe.request("gift.redeem", second))["redemption"]
    assert made["gift"]["balance"] == 5000 - 300 - 200
    assert ok(await probe.request("gift.redeem", redeem))["redemption"] == redemption


def lane_agent(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "agent", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_a_full_or_read_only_state_dir_stops_the_agent_with_one_line(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    """Found by check-config; `run` exits 2 (systemd does not restart on it) with the same
    line, never a traceback and exit 1 (restarted in a loop until the unit fails)."""
    config = write_config(tmp_path / "lane.toml", 1)  # its state dir is the small disk
    assert lane_agent("check-config", str(config)).returncode == 0
    small_disk.fill()
    for options, problem in (("ro", "on a read-only file system"), ("rw", "no room")):
        small_disk.remount(options)
        for args in (("check-config", str(config)), ("run", "--config", str(config))):
            done = lane_agent(*args)
            assert done.returncode == 2, done.stderr
            assert f"  state.dir: {small_disk.path}: {problem}" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr

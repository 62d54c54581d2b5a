"""Seed 003, Gift Local gift redemption, driven only over MQTT as a POS would, against the Gift
Local simulator on loopback: validate by 12-digit code or QR token, check redeemability, redeem
an amount or an item quantity, reverse; unredeemable gifts change nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.giftlocal import BAKERY_KEY, HARBOR_KEY, HARBOR_MARKET, HARBOR_PIER
from simulators.server import Running
from tests.conftest import (
    AgentFactory,
    AgentProcess,
    Probe,
    Simulators,
    sim_faults,
    sim_get,
)
from tests.integration.test_lane_agent import BASE, ProbeFactory, started


@pytest.fixture
def gift_api(simulators: Simulators) -> Running:
    return simulators.start("giftlocal")


def giftlocal_toml(tmp_path: Path, api: Running, key: str, org: str = "") -> str:
    key_file = tmp_path / f"giftlocal-{key}.key"
    key_file.write_text(key)
    location = f'organization_id = "{org}"\n' if org else ""
    return (
        f'[providers.giftlocal]\nbase_url = "{api.url}"\napi_key_file = "{key_file}"\n'
        f'timeout = 3\n{location}[flows]\ngift = "giftlocal"\n'
    )


@pytest.fixture
def bakery(tmp_path: Path, lane_agents: AgentFactory, gift_api: Running) -> AgentProcess:
    """A single-location account: no location needs to be sent."""
    return lane_agents(giftlocal_toml(tmp_path, gift_api, BAKERY_KEY))


async def gift_event(probe: Probe, data: str) -> tuple[str, dict[str, Any]]:
    """Scan `data` (keyed) and wait for the validation event of that token."""
    answer = await probe.request("scan.inject", {"data": data})
    assert answer["status"] == "ok", answer
    token_id: str = answer["data"]["token_id"]
    _, found = await probe.wait_for(
        lambda t, d: (
            t == f"{BASE}/event"
            and d.get("type") in ("gift.validated", "gift.invalid")
            and d["data"]["token_id"] == token_id
        )
    )
    return token_id, found


async def balances(api: Running) -> dict[str, int]:
    ledger = await sim_get(api)
    return {g["voucher_id"]: g["balance"] for g in ledger["gifts"].values()}


async def test_qr_gift_redeemed_in_part_then_reversed(
    bakery: AgentProcess, probe_factory: ProbeFactory, gift_api: Running
) -> None:
    probe = await started(bakery, probe_factory)
    token, validated = await gift_event(probe, "https://giftlocal.com/v/gl-bakery-50")
    gift = validated["data"]["gift"]
    assert validated["type"] == "gift.validated"
    assert (gift["type"], gift["balance"], gift["is_redeemable"]) == ("monetary", 5000, True)
    assert gift["eligible_value"] == 5000

    redeemed = await probe.request("gift.redeem", {"token_id": token, "amount": 1250})
    assert redeemed["status"] == "ok", redeemed
    redemption = redeemed["data"]["redemption"]
    assert redemption["amount"] == 1250 and redemption["gift"]["balance"] == 3750
    assert (await balances(gift_api))[gift["gift_id"]] == 3750

    reversed_ = await probe.request(
        "gift.reverse", {"transaction_id": redemption["transaction_id"]}
    )
    assert reversed_["data"]["reversal"]["gift"]["balance"] == 5000
    again = await probe.request("gift.reverse", {"transaction_id": redemption["transaction_id"]})
    assert again["error"]["code"] == "already_reversed"
    assert (await balances(gift_api))[gift["gift_id"]] == 5000


async def test_keyed_code_with_dashes_and_an_item_gift(
    bakery: AgentProcess, probe_factory: ProbeFactory, gift_api: Running
) -> None:
    probe = await started(bakery, probe_factory)
    token, validated = await gift_event(probe, "1000-0000-0002")
    gift = validated["data"]["gift"]
    assert (gift["type"], gift["item_label"], gift["item_quantity"]) == ("item", "Coffee", 3)
    two = await probe.request("gift.redeem", {"token_id": token, "quantity": 2})
    assert two["data"]["redemption"]["gift"]["item_quantity"] == 1
    too_many = await probe.request("gift.redeem", {"token_id": token, "quantity": 2})
    assert too_many["error"]["code"] == "insufficient_balance"
    assert (await balances(gift_api))[gift["gift_id"]] == 1


@pytest.mark.parametrize(
    ("code", "reason"), [("100000000003", "expired"), ("100000000004", "depleted")]
)
async def test_expired_or_used_up_gift_validates_says_why_and_redeems_nothing(
    bakery: AgentProcess,
    probe_factory: ProbeFactory,
    gift_api: Running,
    code: str,
    reason: str,
) -> None:
    probe = await started(bakery, probe_factory)
    before = await sim_get(gift_api)
    token, validated = await gift_event(probe, code)
    gift = validated["data"]["gift"]
    assert validated["type"] == "gift.validated"
    assert (gift["is_redeemable"], gift["reason"]) == (False, reason)
    assert gift["eligible_value"] == 0 and gift["description"]
    refused = await probe.request("gift.redeem", {"token_id": token, "amount": 100})
    assert refused["error"]["code"] == "not_redeemable"
    assert refused["error"]["details"] == {"reason": reason}
    after = await sim_get(gift_api)
    assert after["gifts"] == before["gifts"] and after["redemptions"] == before["redemptions"]
    redeem_calls = [r for r in await sim_get(gift_api, "requests") if "redeem-gift" in r["path"]]
    assert redeem_calls == []


async def test_unknown_code_and_provider_down_reach_the_pos_as_gift_invalid(
    bakery: AgentProcess, probe_factory: ProbeFactory, gift_api: Running
) -> None:
    probe = await started(bakery, probe_factory)
    _, unknown = await gift_event(probe, "999999999999")
    assert unknown["type"] == "gift.invalid"
    assert unknown["data"]["error"]["code"] == "not_found"
    await sim_faults(gift_api, {"path": ".*/validate-gift", "kind": "error", "status": 503})
    _, down = await gift_event(probe, "100000000001")
    assert down["data"]["error"]["code"] == "provider_unavailable"
    # A provider that never answers: the POS still hears back once the 3 s call bound passes.
    await sim_faults(gift_api, {"path": ".*/validate-gift", "kind": "timeout", "delay": 30})
    _, silent = await gift_event(probe, "100000000002")
    assert silent["data"]["error"]["code"] == "provider_unavailable"


async def test_a_redeem_whose_answer_is_lost_is_settled_by_the_balance_applied_once(
    bakery: AgentProcess, probe_factory: ProbeFactory, gift_api: Running
) -> None:
    """Gift Local has no idempotency key: the agent never resends; it re-reads the balance."""
    probe = await started(bakery, probe_factory)
    token, validated = await gift_event(probe, "100000000001")
    gift_id = validated["data"]["gift"]["gift_id"]
    seeded = len((await sim_get(gift_api))["redemptions"])
    await sim_faults(gift_api, {"path": ".*/redeem-gift", "kind": "drop_after_apply"})
    params = {"request_id": "redeem-lost", "token_id": token, "amount": 500}
    settled = await probe.request("gift.redeem", params)
    assert settled["status"] == "ok", settled
    redemption = settled["data"]["redemption"]
    assert redemption["transaction_id"] == "unconfirmed:redeem-lost"
    assert redemption["gift"]["balance"] == 4500
    assert await probe.request("gift.redeem", params) == settled
    assert len((await sim_get(gift_api))["redemptions"]) == seeded + 1
    assert (await balances(gift_api))[gift_id] == 4500


async def test_a_redeem_that_never_got_there_is_safe_to_send_again(
    bakery: AgentProcess, probe_factory: ProbeFactory, gift_api: Running
) -> None:
    probe = await started(bakery, probe_factory)
    token, validated = await gift_event(probe, "100000000001")
    await sim_faults(gift_api, {"path": ".*/redeem-gift", "kind": "timeout", "delay": 30})
    lost = await probe.request("gift.redeem", {"token_id": token, "amount": 700})
    assert lost["error"]["code"] == "provider_unavailable"
    assert "nothing was redeemed" in lost["error"]["message"]
    again = await probe.request("gift.redeem", {"token_id": token, "amount": 700})
    assert again["data"]["redemption"]["gift"]["balance"] == 4300
    assert (await balances(gift_api))[validated["data"]["gift"]["gift_id"]] == 4300


async def test_a_gift_the_balance_cannot_explain_stays_blocked_never_doubled(
    bakery: AgentProcess, probe_factory: ProbeFactory, gift_api: Running
) -> None:
    """The answer is lost, the balance cannot be read, then the gift is used elsewhere: the
    lane cannot tell whether its own redemption happened, so it refuses to redeem again."""
    probe = await started(bakery, probe_factory)
    token, validated = await gift_event(probe, "100000000001")
    gift_id = validated["data"]["gift"]["gift_id"]
    await sim_faults(
        gift_api,
        {"path": ".*/redeem-gift", "kind": "drop_after_apply"},
        # The validate before the redeem goes through; the one after the lost answer fails.
        {"path": ".*/validate-gift", "kind": "error", "status": 503, "after": 1},
    )
    lost = await probe.request("gift.redeem", {"token_id": token, "amount": 500})
    assert lost["error"]["code"] == "unknown_outcome"
    async with httpx.AsyncClient(base_url=gift_api.url) as other_lane:
        spent = await other_lane.post(
            "/api/integration/redemption/redeem-gift",
            json={"voucherID": gift_id, "amount": 10.0},
            headers={"Authorization": BAKERY_KEY},
        )
        assert spent.status_code == 200, spent.text
    blocked = await probe.request("gift.redeem", {"token_id": token, "amount": 500})
    assert blocked["error"]["code"] == "earlier_redemption"
    assert "may have gone through" in blocked["error"]["message"]
    assert (await balances(gift_api))[gift_id] == 5000 - 500 - 1000


async def test_multi_location_account_redeems_at_the_configured_location(
    tmp_path: Path, lane_agents: AgentFactory, gift_api: Running, probe_factory: ProbeFactory
) -> None:
    pier = lane_agents(giftlocal_toml(tmp_path, gift_api, HARBOR_KEY, HARBOR_PIER))
    probe = await started(pier, probe_factory)
    seeded = set((await sim_get(gift_api))["redemptions"])
    token, validated = await gift_event(probe, "200000000002")  # pastries, only at the Pier
    assert validated["data"]["gift"]["is_redeemable"] is True
    done = await probe.request("gift.redeem", {"token_id": token, "quantity": 1})
    assert done["status"] == "ok", done
    ledger = (await sim_get(gift_api))["redemptions"]
    [new] = [r for tx, r in ledger.items() if tx not in seeded]
    assert new["organization_id"] == HARBOR_PIER


async def test_gift_for_another_location_is_not_redeemable_here(
    tmp_path: Path, lane_agents: AgentFactory, gift_api: Running, probe_factory: ProbeFactory
) -> None:
    market = lane_agents(giftlocal_toml(tmp_path, gift_api, HARBOR_KEY, HARBOR_MARKET))
    probe = await started(market, probe_factory)
    before = await sim_get(gift_api)
    token, validated = await gift_event(probe, "200000000002")
    assert validated["data"]["gift"]["reason"] == "wrong_location"
    refused = await probe.request("gift.redeem", {"token_id": token, "quantity": 1})
    assert refused["error"]["details"] == {"reason": "wrong_location"}
    assert (await sim_get(gift_api))["redemptions"] == before["redemptions"]

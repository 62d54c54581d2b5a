"""Punchh identify (seed 002, step 5): a one-time password sent and verified, and a new guest
signed up, as MQTT ops in-process; the guest's phone, email and code never leave the agent in
clear (the answers and events carry masks, the logs too)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.contract import ErrorBody
from agent.errors import ErrorCode
from agent.tokens import mask
from simulators.punchh import PunchhSimulator
from tests.lane import InProcessLane, order

NEW_PHONE = "5550199999"  # nobody at the simulator
NEW_EMAIL = "dee@example.com"
ANA_PHONE = "5550100001"  # Punchh guest 101
MASKED = mask(NEW_PHONE)
AGREED = {"accepted_terms": True}


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[InProcessLane]:
    made = InProcessLane(tmp_path, {"punchh": PunchhSimulator()})
    await made.ok("order.update", **order("L1", ("Burger", 1000, None)))
    yield made
    await made.close()


def sent_codes(lane: InProcessLane) -> list[dict[str, str]]:
    outbox: list[dict[str, str]] = lane.ledger("punchh")["otp_outbox"]
    return outbox


def published_text(lane: InProcessLane) -> str:
    return json.dumps(lane.published())


def agent_logs(caplog: pytest.LogCaptureFixture) -> str:
    """What the agent logged (httpx's own request lines are silenced by `agent.logs`)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("agent"))


async def verify_refused(lane: InProcessLane, why: ErrorCode, **params: Any) -> ErrorBody:
    """`loyalty.otp_verify` refused with `why` (its params have a `code` of their own)."""
    answer = await lane.ask("loyalty.otp_verify", **params)
    assert answer.error is not None and answer.error.code is why, answer
    return answer.error


async def test_a_new_guest_signs_in_by_one_time_password_and_is_attached_to_the_order(
    lane: InProcessLane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_id = await lane.scan(NEW_PHONE)
    (invalid,) = lane.events("loyalty.invalid")
    assert (invalid["token_id"], invalid["error"]["code"]) == (token_id, "not_found")

    sent = await lane.ok("loyalty.otp_send", token_id=token_id)
    assert (sent["channel"], sent["display"]) == ("sms", MASKED)
    (message,) = sent_codes(lane)
    assert message["to"] == NEW_PHONE

    wrong = "000000" if message["code"] != "000000" else "111111"
    refused = await verify_refused(
        lane, ErrorCode.INVALID_REQUEST, token_id=token_id, code=wrong, **AGREED
    )
    assert "Invalid or expired OTP" in refused.message
    user = await lane.ok("loyalty.otp_verify", token_id=token_id, code=message["code"], **AGREED)
    assert user["order_id"] == "L1" and user["display"] == MASKED
    assert user["guest"]["phone_masked"] == MASKED
    assert lane.events("loyalty.user") == [user]
    assert user["guest"]["user_id"] in lane.ledger("punchh")["guests"]  # signed up by verifying
    view = (await lane.ok("order.get", order_id="L1"))["flows"]["loyalty"]
    assert view["guest"]["user_id"] == user["guest"]["user_id"]

    for secret in (NEW_PHONE, message["code"]):
        assert secret not in published_text(lane) and secret not in agent_logs(caplog)


async def test_a_known_guest_proves_their_email_and_gets_their_rewards(
    lane: InProcessLane,
) -> None:
    token_id = await lane.scan("ana@example.com")
    assert (await lane.ok("loyalty.otp_send", token_id=token_id))["channel"] == "email"
    (message,) = sent_codes(lane)
    user = await lane.ok("loyalty.otp_verify", token_id=token_id, code=message["code"], **AGREED)
    assert user["guest"]["user_id"] == "101"
    assert "Free Coffee" in [r["name"] for r in user["guest"]["rewards"]]
    # Verified: the password is spent, a repeat with a new request is refused.
    await verify_refused(
        lane, ErrorCode.UNKNOWN_TOKEN, token_id=token_id, code=message["code"], **AGREED
    )


async def test_verify_needs_a_password_sent_and_the_guests_agreement(
    lane: InProcessLane,
) -> None:
    token_id = await lane.scan(ANA_PHONE)
    await verify_refused(lane, ErrorCode.UNKNOWN_TOKEN, token_id=token_id, code="123456", **AGREED)
    await lane.ok("loyalty.otp_send", token_id=token_id)
    refused = await verify_refused(
        lane,
        ErrorCode.INVALID_REQUEST,
        token_id=token_id,
        code=sent_codes(lane)[0]["code"],
        accepted_terms=False,
    )
    assert "privacy policy" in refused.message
    code = await lane.scan("1234567")  # a redemption code: no password goes to it
    await lane.refused(ErrorCode.INVALID_REQUEST, "loyalty.otp_send", token_id=code)


async def test_a_new_guest_is_signed_up_with_their_phone_and_email(
    lane: InProcessLane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    phone = await lane.scan(NEW_PHONE)
    email = await lane.scan(NEW_EMAIL)
    user = await lane.ok(
        "loyalty.signup",
        token_id=phone,
        email_token_id=email,
        first_name="Dee",
        last_name="Vance",
        **AGREED,
    )
    guest = user["guest"]
    assert (guest["first_name"], guest["phone_masked"], user["order_id"]) == (
        "Dee",
        MASKED,
        "L1",
    )
    assert guest["email_masked"].endswith("@example.com") and NEW_EMAIL not in json.dumps(guest)
    assert lane.events("loyalty.user")[-1] == user
    sim = lane.simulators["punchh"]
    (created,) = [r for r in sim.requests if r.path == "/api/pos/users"]
    assert json.loads(created.body)["email"] == NEW_EMAIL

    again = await lane.refused(
        ErrorCode.INVALID_REQUEST, "loyalty.signup", token_id=phone, **AGREED
    )
    assert again.message == "Phone has already been taken"
    for secret in (NEW_PHONE, NEW_EMAIL, "Vance"):
        assert secret not in published_text(lane) and secret not in agent_logs(caplog)


async def test_sign_up_takes_a_phone(lane: InProcessLane) -> None:
    email = await lane.scan(NEW_EMAIL)
    await lane.refused(ErrorCode.INVALID_REQUEST, "loyalty.signup", token_id=email, **AGREED)

"""The K-Series notification receiver's pure parts: the tolerant reader, Basic authentication
and the choice of lane op (agent/kseries_notify.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.kseries_notify import (
    ReceiptKind,
    ReceiptNotice,
    UnreadableNotice,
    basic_auth_ok,
    plan,
    read_notice,
)
from agent.orders import OrderStatus
from agent.secrets import Secret

FINALIZED, VOIDED = ReceiptKind.FINALIZED, ReceiptKind.VOIDED


def read(data: Any) -> ReceiptNotice | None:
    return read_notice(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # the smallest notifications the reader acts on
        ({"notificationType": "CLOSE", "ikentooAccountIdentifier": "A1.1"}, (FINALIZED, "A1.1")),
        ({"type": "VOID", "initialAccountId": "A1.1"}, (VOIDED, "A1.1")),
        ({"status": "closed", "identifier": 42}, (FINALIZED, "42")),
        # the public payment-notification example's fields, plus unknown ones, change nothing
        (
            {
                "type": "VOID",
                "status": "SUCCESS",
                "ikentooAccountId": "2114502594134196",
                "ikentooAccountIdentifier": "A9.2",
                "businessLocationId": 247158188015618,
                "thirdPartyReference": "REF11",
                "payments": [{"code": "GIFTCARD", "amount": "12.50"}],
                "somethingNew": {"nested": True},
            },
            (VOIDED, "A9.2"),
        ),
        # a void names the initial account first
        ({"type": "VOID", "initialAccountId": "A1.1", "identifier": "A1.2"}, (VOIDED, "A1.1")),
    ],
)
def test_reads_seed_and_public_names_first_and_ignores_the_rest(
    data: dict[str, Any], expected: tuple[ReceiptKind, str]
) -> None:
    assert read(data) == ReceiptNotice(*expected)


@pytest.mark.parametrize(
    "data",
    [
        {"notificationType": "OPEN", "ikentooAccountIdentifier": "A1.1"},
        {"notificationType": "UPDATE", "ikentooAccountIdentifier": "A1.1"},
        {"type": "PAYMENT", "status": "SUCCESS", "ikentooAccountIdentifier": "A1.1"},
        {"type": "REFUND", "initialAccountId": "A1.1"},
        {"notificationType": "CLOSE"},  # no account
        {"notificationType": "CLOSE", "identifier": True},
        {"notificationType": "CLOSE", "type": "VOID", "identifier": "A1.1"},  # ambiguous
        {},
    ],
)
def test_anything_else_is_ignored_and_moves_nothing(data: dict[str, Any]) -> None:
    assert read(data) is None


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"CLOSE"', b"\xff"])
def test_a_body_that_is_no_json_object_is_unreadable(raw: bytes) -> None:
    with pytest.raises(UnreadableNotice):
        read_notice(raw)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_fields = st.sampled_from(
    ["type", "notificationType", "status", "identifier", "initialAccountId", "x"]
)
_values = _json | st.sampled_from(["CLOSE", "VOID", "closed", "void", "UPDATE"])


@given(st.dictionaries(_fields | st.text(max_size=8), _values, max_size=6))
def test_any_object_is_read_or_ignored_never_an_error(data: dict[str, Any]) -> None:
    notice = read(data)
    if notice is not None:
        assert notice.account and len(notice.account) <= 64


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (basic("kseries:pw:with:colons"), True),
        ("basic " + basic("kseries:pw:with:colons")[6:], True),
        (basic("kseries:pw"), False),
        (basic("other:pw:with:colons"), False),
        (basic("kseries"), False),
        ("Bearer pw:with:colons", False),
        ("Basic !!!", False),
        ("", False),
        (None, False),
    ],
)
def test_basic_credentials(header: str | None, ok: bool) -> None:
    assert basic_auth_ok(header, "kseries", Secret("pw:with:colons")) is ok


@pytest.mark.parametrize(
    ("kind", "status", "op"),
    [
        (FINALIZED, OrderStatus.OPEN, "order.paid"),
        (FINALIZED, OrderStatus.PAID, None),
        (FINALIZED, OrderStatus.VOID, None),  # given back already: logged for a person
        (FINALIZED, OrderStatus.REFUNDED, None),
        (VOIDED, OrderStatus.OPEN, "order.void"),
        (VOIDED, OrderStatus.ABANDONED, "order.void"),
        (VOIDED, OrderStatus.PAID, "order.refund"),
        (VOIDED, OrderStatus.VOID, None),
        (VOIDED, OrderStatus.REFUNDED, None),
    ],
)
def test_the_lane_op_for_each_receipt_and_order_state(
    kind: ReceiptKind, status: OrderStatus, op: str | None
) -> None:
    assert plan(kind, status) == op

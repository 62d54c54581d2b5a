"""The operation-class table covers every op and every order hook, so it cannot drift from what
the agent does."""

from __future__ import annotations

from agent.contract import OPS
from agent.contract.admin import ADMIN_PREFIX
from agent.operations import OPERATIONS, OperationClass

# Ops that call no provider (the fleet's admin ops included: the bundle's health checks only read,
# like device.health's).
LOCAL_OPS = {"scan.inject", "device.health", "order.get"} | {
    op for op in OPS if op.startswith(ADMIN_PREFIX)
}
ORDER_FLOWS = ("gift", "card", "coupons", "loyalty")


def test_every_op_that_calls_a_provider_is_classified() -> None:
    reached = " ".join(how for _, how, _, _ in OPERATIONS)
    missing = [op for op in OPS if op not in LOCAL_OPS and f"`{op}`" not in reached]
    assert missing == []


def test_every_order_hook_is_queued_and_every_request_op_online() -> None:
    hooks = {what: cls for what, _, cls, _ in OPERATIONS if ": " in what}
    for phase in ("paid", "void", "abandoned", "refund"):
        for flow in ORDER_FLOWS:
            assert hooks[f"{phase}: {flow}"] is OperationClass.QUEUED
    online = [cls for what, _, cls, _ in OPERATIONS if ": " not in what]
    assert set(online) == {OperationClass.ONLINE}

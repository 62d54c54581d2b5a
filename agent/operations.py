"""Which provider work may wait for the network and which may not, in one table, like a payment
terminal's store-and-forward rules.

- ONLINE: the answer decides what happens at the till (a balance, a redemption, an
  authorization): it needs the provider now. Offline, it is refused at once with
  `provider_unavailable` (the HTTP seam stops trying for a few seconds after a failed
  connection), never queued: a redemption queued offline could spend a balance twice.
- QUEUED: the sale already happened (commits, check-ins, receipts, captures, releases,
  reversals): it is written to the outbox and delivered whenever the provider is back.

The structure follows the table: ONLINE work is done by request ops and scans, QUEUED work by
the flows' order hooks, which only the outbox runs. A test checks that every op and every
order hook is classified here, and docs/mqtt-api.md's table is generated from it.
"""

from __future__ import annotations

import enum


class OperationClass(enum.StrEnum):
    ONLINE = "online only"
    QUEUED = "queued when offline"


# (what, how it is reached, class, provider calls it makes)
OPERATIONS: tuple[tuple[str, str, OperationClass, str], ...] = (
    (
        "gift voucher validate",
        "scan, `gift.validate`",
        OperationClass.ONLINE,
        "Gift Local validate",
    ),
    ("gift voucher redeem", "`gift.redeem`", OperationClass.ONLINE, "Gift Local redeem"),
    ("gift voucher reverse", "`gift.reverse`", OperationClass.ONLINE, "Gift Local reversal"),
    ("gift card balance", "scan, `gift.validate`", OperationClass.ONLINE, "card lookup"),
    ("gift card payment", "`gift.redeem`", OperationClass.ONLINE, "card debit"),
    ("gift card payment back", "`gift.reverse`", OperationClass.ONLINE, "card reversal"),
    ("coupon customer", "phone scan, `coupon.customer`", OperationClass.ONLINE, "PETZ customer"),
    ("coupon authorization", "`coupon.authorize`", OperationClass.ONLINE, "PETZ auth create"),
    ("coupon capture, again", "`coupon.capture`", OperationClass.ONLINE, "PETZ capture"),
    ("loyalty guest", "scan, `loyalty.lookup`", OperationClass.ONLINE, "Punchh user search"),
    ("loyalty discounts", "`loyalty.select`", OperationClass.ONLINE, "Punchh select + query"),
    (
        "loyalty sign-in by code",
        "`loyalty.otp_send`, `loyalty.otp_verify`",
        OperationClass.ONLINE,
        "Punchh Send OTP, Verify Token, user search",
    ),
    ("loyalty sign-up", "`loyalty.signup`", OperationClass.ONLINE, "Punchh Create New User"),
    ("order sync", "`order.update`", OperationClass.ONLINE, "PETZ order (best effort)"),
    ("paid: gift", "`order.paid`", OperationClass.QUEUED, "none (redeemed at tender)"),
    ("paid: card", "`order.paid`", OperationClass.QUEUED, "none"),
    ("paid: coupons", "`order.paid`", OperationClass.QUEUED, "PETZ capture, order paid"),
    ("paid: loyalty", "`order.paid`", OperationClass.QUEUED, "Punchh commit, check-in, receipt"),
    ("void: gift", "`order.void`", OperationClass.QUEUED, "voucher reversals"),
    ("void: card", "`order.void`", OperationClass.QUEUED, "card reversals"),
    ("void: coupons", "`order.void`", OperationClass.QUEUED, "PETZ release (order void)"),
    ("void: loyalty", "`order.void`", OperationClass.QUEUED, "Punchh unlock, void redemption"),
    ("abandoned: gift", "a new order id", OperationClass.QUEUED, "voucher reversals"),
    ("abandoned: card", "a new order id", OperationClass.QUEUED, "card reversals"),
    ("abandoned: coupons", "a new order id", OperationClass.QUEUED, "PETZ release"),
    ("abandoned: loyalty", "a new order id", OperationClass.QUEUED, "Punchh unlock"),
    ("refund: gift", "`order.refund`", OperationClass.QUEUED, "voucher reversals"),
    ("refund: card", "`order.refund`", OperationClass.QUEUED, "card reversals"),
    ("refund: coupons", "`order.refund`", OperationClass.QUEUED, "none: PETZ has no refund"),
    (
        "refund: loyalty",
        "`order.refund`",
        OperationClass.QUEUED,
        "Punchh void redemption until the check-in; after it, none (the step says what to do)",
    ),
)


def table() -> str:
    lines = ["| work | reached by | class | provider calls |", "|---|---|---|---|"]
    lines += [f"| {what} | {how} | {cls} | {calls} |" for what, how, cls, calls in OPERATIONS]
    return "\n".join(lines)

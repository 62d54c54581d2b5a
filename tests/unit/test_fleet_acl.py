"""The documented store ACL keeps every POS screen from every admin op of the contract: a new
admin op without its deny lines would be open to the screens."""

from __future__ import annotations

import re
from pathlib import Path

from agent.contract import OPS
from agent.contract.admin import ADMIN_PREFIX

ACL = Path(__file__).resolve().parents[2] / "docs" / "security" / "lane-agent.acl"


def test_every_pos_user_is_denied_every_admin_op() -> None:
    blocks = re.split(r"^user ", ACL.read_text(encoding="utf-8"), flags=re.MULTILINE)[1:]
    admin_ops = {op for op in OPS if op.startswith(ADMIN_PREFIX)}
    assert len(admin_ops) >= 7
    pos_blocks = [b for b in blocks if b.startswith("pos-")]
    assert pos_blocks
    for block in pos_blocks:
        lane = block.split()[0].removeprefix("pos-")
        denied = set(re.findall(rf"^topic deny lane-agent/s1/{lane}/request/(\S+)$", block, re.M))
        assert denied == admin_ops, block

"""Punchh loyalty (placeholder being written)."""

from __future__ import annotations

from agent.flows.base import FlowContext, LaneFlow


def build(ctx: FlowContext) -> LaneFlow | None:
    return None

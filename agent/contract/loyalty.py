"""MQTT payloads of the loyalty flow (placeholder being written)."""

from __future__ import annotations

from agent.contract.base import OpSpec, _Payload

EVENTS: dict[str, type[_Payload]] = {}

OPS: dict[str, OpSpec] = {}

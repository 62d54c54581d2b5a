"""Generates the tables of docs/mqtt-api.md from the contract models, so the docs cannot drift.

`python -m agent.docgen` (`make docs`) rewrites the text between the `<!-- generated:... -->`
markers of docs/mqtt-api.md and docs/config.md; a test fails when a committed file differs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.contract import EVENT_DATA, OPS, TOPICS
from agent.errors import ErrorCode


def _type_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " \\| ".join(_type_name(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_name(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type_name(schema['additionalProperties'])}"
    if schema.get("format") in {"date-time", "uuid"}:
        return f"{kind} ({schema['format']})"
    return str(kind)


def fields_table(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    rows = ["| field | type | required | notes |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        notes = str(prop.get("description", "")).replace("\n", " ").replace("|", "\\|")
        if "default" in prop and name not in required and prop["default"] is not None:
            notes = (
                f"default `{prop['default']}`. {notes}".strip(". ")
                if notes
                else f"default `{prop['default']}`"
            )
        rows.append(
            f"| `{name}` | {_type_name(prop)} | {'yes' if name in required else ''} | {notes} |"
        )
    return "\n".join(rows)


def operations_table() -> str:
    from agent.operations import table

    return table()


def sections() -> dict[str, str]:
    topics = ["| topic | direction | payload | notes |", "|---|---|---|---|"]
    for topic, (direction, model, note) in TOPICS.items():
        topics.append(f"| `{{base}}/{topic}` | {direction} | `{model.__name__}` | {note} |")
    ops = ["| op | params | result (`data`) | what it does |", "|---|---|---|---|"]
    for op, spec in OPS.items():
        ops.append(
            f"| `{op}` | `{spec.params.__name__}` | `{spec.result.__name__}` | {spec.summary} |"
        )
    errors = ["| code | meaning |", "|---|---|"]
    errors += [f"| `{code.value}` | {_ERROR_MEANING[code]} |" for code in ErrorCode]
    models: list[str] = []
    seen: set[str] = set()
    named: list[type[BaseModel]] = [m for _, m, _ in TOPICS.values()]
    named += [spec.params for spec in OPS.values()] + [spec.result for spec in OPS.values()]
    named += list(EVENT_DATA.values())
    for named_model in named:
        if named_model.__name__ in seen:
            continue
        seen.add(named_model.__name__)
        doc = (named_model.__doc__ or "").strip().splitlines()[0] if named_model.__doc__ else ""
        heading = f"### `{named_model.__name__}`\n\n" + (f"{doc}\n\n" if doc else "")
        models.append(f"{heading}{fields_table(named_model)}\n")
    events = ["| type | data |", "|---|---|"]
    events += [f"| `{t}` | `{m.__name__}` |" for t, m in EVENT_DATA.items()]
    return {
        "operations": operations_table(),
        "topics": "\n".join(topics),
        "ops": "\n".join(ops),
        "events": "\n".join(events),
        "errors": "\n".join(errors),
        "models": "\n".join(models).rstrip(),
    }


_ERROR_MEANING = {
    ErrorCode.INVALID_REQUEST: "malformed JSON, missing `request_id`, or params that fail "
    "validation (the message names the field)",
    ErrorCode.UNKNOWN_OP: "no such op; the message lists the known ones",
    ErrorCode.REQUEST_ID_CONFLICT: "the `request_id` was already used for another op, or for "
    "the same op with other params (`details.first_op` names the first request's op); nothing "
    "was done: send a new `request_id` for a new request",
    ErrorCode.UNKNOWN_TOKEN: "the `token_id` is unknown or expired (agent restarted, or older "
    "than `state.token_ttl`): scan again",
    ErrorCode.NOT_FOUND: "the provider does not know this gift, card or transaction",
    ErrorCode.NOT_REDEEMABLE: "found, but cannot be redeemed now (depleted, voided)",
    ErrorCode.INSUFFICIENT_BALANCE: "the amount is more than is available; the message says "
    "how much is",
    ErrorCode.EXPIRED: "the gift's validity ended",
    ErrorCode.NOT_YET_VALID: "the gift's validity has not started",
    ErrorCode.WRONG_LOCATION: "the gift cannot be used at this store",
    ErrorCode.ALREADY_REVERSED: "the transaction was reversed before",
    ErrorCode.BASKET_LOCKED: "the loyalty basket is locked by another transaction",
    ErrorCode.PROVIDER_UNAVAILABLE: "the provider could not be reached or failed; nothing was done",
    ErrorCode.UNKNOWN_OUTCOME: "the provider may or may not have applied the change; the agent "
    "could not tell",
    ErrorCode.NOT_CONFIGURED: "no provider is configured for this flow on this lane",
    ErrorCode.RATE_LIMITED: "`scan.inject` faster than `scans.rate` allows for the keyed "
    "device: the scan was dropped (and counted); send it again",
    ErrorCode.STORAGE_FULL: "the lane device's disk is full: the agent could not record the "
    "step before doing it, so it refused it; free space and send the same request again",
    ErrorCode.INTERNAL: "a bug in the agent; its log has the details",
}


def config_sections() -> dict[str, str]:
    """One table per config section, in the order a config file is usually written."""
    from agent.config import (
        FifoDeviceSettings,
        FlowSettings,
        HomeAssistantSettings,
        LaneSettings,
        LogSettings,
        MqttSettings,
        ScanSettings,
        StateSettings,
        TlsSettings,
    )
    from agent.normalise import CustomRule, NormaliserSettings
    from agent.providers.giftlocal import GiftLocalSettings
    from agent.providers.kseries import KSeriesSettings
    from agent.providers.petz import PetzSettings
    from agent.providers.punchh import PunchhSettings
    from agent.providers.sandbox import SandboxSettings
    from drivers.hidpos import HidPosSettings
    from drivers.keyboard import KeyboardSettings
    from drivers.nfc_reader import NfcSettings
    from drivers.serial_port import SerialSettings

    tables: list[tuple[str, type[BaseModel]]] = [
        ("[lane]", LaneSettings),
        ("[mqtt]", MqttSettings),
        ("[mqtt.tls]", TlsSettings),
        ('[devices.NAME] with type = "evdev" (keyboard-wedge scanner)', KeyboardSettings),
        ('[devices.NAME] with type = "serial"', SerialSettings),
        ('[devices.NAME] with type = "hidpos" (USB HID-POS scanner)', HidPosSettings),
        ('[devices.NAME] with type = "nfc"', NfcSettings),
        ('[devices.NAME] with type = "fifo" (named pipe)', FifoDeviceSettings),
        ("[providers.sandbox]", SandboxSettings),
        ("[providers.giftlocal] (docs/providers/giftlocal.md)", GiftLocalSettings),
        ("[providers.kseries] (docs/providers/kseries.md)", KSeriesSettings),
        ("[providers.petz] (docs/providers/petz.md)", PetzSettings),
        ("[providers.punchh] (docs/providers/punchh.md)", PunchhSettings),
        ("[flows]", FlowSettings),
        ("[normaliser]", NormaliserSettings),
        ("[[normaliser.custom]]", CustomRule),
        ("[scans]", ScanSettings),
        ("[state]", StateSettings),
        ("[log]", LogSettings),
        ("[homeassistant] (docs/homeassistant.md)", HomeAssistantSettings),
    ]
    body = "\n".join(f"### `{title}`\n\n{fields_table(model)}\n" for title, model in tables)
    return {"config": body.rstrip()}


DOCS = {"docs/mqtt-api.md": sections, "docs/config.md": config_sections}


def render(text: str, make: Callable[[], dict[str, str]] = sections) -> str:
    for name, body in make().items():
        text = _splice(text, name, body)
    return text


def _splice(text: str, name: str, body: str) -> str:
    start, end = f"<!-- generated:{name} -->\n", f"<!-- /generated:{name} -->"
    pattern = re.compile(rf"({re.escape(start)})(?:.*?\n)?({re.escape(end)})", re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"marker {start.strip()} missing")
    return pattern.sub(lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text)


def main(root: Path) -> int:
    for name, make in DOCS.items():
        path = root / name
        path.write_text(render(path.read_text(encoding="utf-8"), make), encoding="utf-8")
        print(f"regenerated the tables in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path()))

"""Generates the tables of docs/mqtt-api.md from the contract models, so the docs cannot drift.

`python -m agent.docgen` (`make docs`) rewrites the text between the `<!-- generated:... -->`
markers of docs/mqtt-api.md and docs/config.md; a test fails when a committed file differs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from agent.config import Config, FlowSettings, LaneSettings
from agent.contract import EVENT_DATA, OPS, TOPICS
from agent.contract.base import EVERY_OP_ERRORS
from agent.errors import ErrorCode
from agent.normalise import Kind
from agent.registry import FLOW_NAMES, FlowName, able
from agent.scans import NFC_UID


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
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def _prose(text: str) -> str:
    """A docstring as Markdown: each paragraph on one line (the source wraps at 100 columns),
    paragraphs kept apart."""
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()))
    return "\n\n".join(p for p in paragraphs if p)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rows(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = ["| field | type | required | notes |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        notes = _cell(str(prop.get("description", "")))
        if "default" in prop and name not in required and prop["default"] is not None:
            default = f"default `{prop['default']}`"
            notes = f"{default}. {notes}" if notes else default
        rows.append(
            f"| `{name}` | {_type_name(prop)} | {'yes' if name in required else ''} | {notes} |"
        )
    return "\n".join(rows)


def fields_table(model: type[BaseModel]) -> str:
    return _rows(model.model_json_schema())


def _section(name: str, schema: dict[str, Any]) -> str:
    """A heading, the type's whole docstring, and its fields (or an enum's values)."""
    doc = _prose(str(schema.get("description", "")))
    body = (
        "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
        if "enum" in schema
        else _rows(schema)
    )
    return f"### `{name}`\n\n" + (f"{doc}\n\n" if doc else "") + f"{body}\n"


def _refs(node: object) -> Iterator[str]:
    """The `$defs` names a schema refers to, in the order its fields name them."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield str(value).rsplit("/", 1)[-1]
            elif key != "$defs":
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _payloads() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every documented payload once, in the doc's order, with the schema of the way it travels:
    what the POS sends as validated, what the agent sends as serialized (with the computed
    fields, e.g. a card's `is_redeemable`)."""
    payloads: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation" if direction.startswith("POS") else "serialization")
        for direction, model, _ in TOPICS.values()
    ]
    payloads += [(spec.params, "validation") for spec in OPS.values()]
    payloads += [(spec.result, "serialization") for spec in OPS.values()]
    payloads += [(model, "serialization") for model in EVENT_DATA.values()]
    unique: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {}
    for model, mode in payloads:
        unique.setdefault(model.__name__, (model, mode))
    return list(unique.values())


def _nested(roots: list[dict[str, Any]], documented: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every type the payloads contain, each once, depth first in field order."""
    found: dict[str, dict[str, Any]] = {}

    def visit(schema: dict[str, Any], defs: dict[str, Any]) -> None:
        for name in _refs(schema):
            if name in found:
                if found[name] != defs[name]:
                    raise ValueError(f"two different types are named {name}")
                continue
            found[name] = defs[name]
            visit(defs[name], defs)

    for root in roots:
        visit(root, root.get("$defs", {}))
    return [(name, schema) for name, schema in found.items() if name not in documented]


def _codes(codes: tuple[ErrorCode, ...]) -> str:
    """In the vocabulary's order, whatever order the op lists them in."""
    order = list(ErrorCode)
    return ", ".join(f"`{code.value}`" for code in sorted(codes, key=order.index))


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
    op_errors = [
        f"Every op can answer any of {_codes(EVERY_OP_ERRORS)}; a request to an op not listed "
        "here is answered `unknown_op`. Besides those:",
        "",
        "| op | can answer |",
        "|---|---|",
    ]
    op_errors += [
        f"| `{op}` | {_codes(spec.errors) or 'nothing else'} |" for op, spec in OPS.items()
    ]
    payloads = [(model.__name__, model.model_json_schema(mode=mode)) for model, mode in _payloads()]
    nested = _nested([schema for _, schema in payloads], {name for name, _ in payloads})
    events = ["| type | data |", "|---|---|"]
    events += [f"| `{t}` | `{m.__name__}` |" for t, m in EVENT_DATA.items()]
    return {
        "operations": operations_table(),
        "topics": "\n".join(topics),
        "ops": "\n".join(ops),
        "events": "\n".join(events),
        "errors": "\n".join(errors),
        "op-errors": "\n".join(op_errors),
        "models": "\n".join(_section(name, schema) for name, schema in payloads).rstrip(),
        "types": "\n".join(_section(name, schema) for name, schema in nested).rstrip(),
    }


_ERROR_MEANING = {
    ErrorCode.INVALID_REQUEST: "malformed JSON, missing `request_id`, params that fail validation "
    "(the message names the field), a `request_id` already used for another op, or a request the "
    "lane's state does not allow (no open order, a token of another kind, more than is left to "
    "pay); also a field the provider refused; a request published retained, or with an MQTT v5 "
    "Response Topic outside `{base}/reply/` (nothing is done)",
    ErrorCode.UNKNOWN_OP: "no such op; the message lists the known ones",
    ErrorCode.REQUEST_ID_CONFLICT: "the `request_id` was already used for another op, or for "
    "the same op with other params (`details.first_op` names the first request's op); nothing "
    "was done: send a new `request_id` for a new request",
    ErrorCode.UNKNOWN_TOKEN: "the `token_id` is unknown or expired (agent restarted, or older "
    "than `state.token_ttl`): scan again",
    ErrorCode.NOT_FOUND: "the provider does not know this gift, card, transaction, customer or "
    "guest; or the lane does not know this order (or the order has no coupon authorization)",
    ErrorCode.NOT_REDEEMABLE: "found, but cannot be used now: a gift depleted or voided "
    "(`details.reason` says which), a card blocked or in another currency, no coupon that "
    "applies, a released authorization, a reward the loyalty provider's rules refuse",
    ErrorCode.INSUFFICIENT_BALANCE: "the amount is more than is available; the message says "
    "how much is, and `details` has `available` (and `currency`) when the provider said",
    ErrorCode.EXPIRED: "the gift's or card's validity ended, or a loyalty code expired",
    ErrorCode.NOT_YET_VALID: "the gift's validity has not started",
    ErrorCode.WRONG_LOCATION: "the gift cannot be used at this store",
    ErrorCode.ALREADY_REVERSED: "the transaction was reversed before",
    ErrorCode.BASKET_LOCKED: "the loyalty basket is locked by another transaction",
    ErrorCode.PROVIDER_UNAVAILABLE: "the provider could not be reached, was busy, or answered "
    "what the agent cannot read; nothing was done: try again",
    ErrorCode.UNKNOWN_OUTCOME: "the provider may or may not have applied the change; the agent "
    "could not tell",
    ErrorCode.EARLIER_REDEMPTION: "an earlier redemption of this gift on this lane went through "
    "after a fault (its screen was not told) or may have: nothing was redeemed now. "
    "`details.earlier` lists them (`request_id`, `outcome` applied or unknown, `units`, "
    "`currency`, `transaction_id`); to redeem again all the same, send a new request with "
    "`confirm_repeat: true`",
    ErrorCode.NOT_CONFIGURED: "no provider is configured for this flow on this lane, or the "
    "provider refused the lane's settings (API key, location, `base_url`)",
    ErrorCode.RATE_LIMITED: "`scan.inject` faster than `scans.rate` allows for the keyed "
    "device: the scan was dropped (and counted); send it again",
    ErrorCode.BUSY: "the lane has more requests than `mqtt.request_rate` and "
    "`mqtt.request_pending` allow (its screens together): nothing was done; send the same "
    "request again in a moment. `device.health` is never answered `busy`",
    ErrorCode.STORAGE_FULL: "the lane device's disk is full: the agent could not record the "
    "step before doing it, so it refused it; free space and send the same request again",
    ErrorCode.INTERNAL: "a bug in the agent, or a provider answer no code fits; the agent log "
    "has the details",
}


def config_sections() -> dict[str, str]:
    """One table per config section, in the order a config file is usually written."""
    from agent.config import (
        FifoDeviceSettings,
        HomeAssistantSettings,
        LogSettings,
        MqttSettings,
        ScanSettings,
        StateSettings,
        TlsSettings,
    )
    from agent.normalise import CustomRule, NormaliserSettings
    from agent.providers.settings import (
        GiftLocalSettings,
        KSeriesSettings,
        PetzSettings,
        PunchhSettings,
        SandboxSettings,
    )
    from drivers.settings import HidPosSettings, KeyboardSettings, NfcSettings, SerialSettings

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
    return {"config": body.rstrip(), "token-kinds": token_kinds()}


def _routes(flows: Collection[FlowName]) -> dict[str, FlowName]:
    """`Config.kind_routes` of a lane whose `[flows]` gives exactly these flows a provider."""
    named = {flow: able(flow)[0] for flow in flows}
    lane = LaneSettings(store="s", lane="l")
    return Config(lane=lane, flows=FlowSettings.model_validate(named)).kind_routes()


def _default_flows(kind: str) -> list[FlowName]:
    """The flows `kind` goes to by default, in order of preference: the one it goes to with
    every flow configured, then the one without that flow, and so on."""
    order: list[FlowName] = []
    while (flow := _routes(set(FLOW_NAMES) - set(order)).get(kind)) is not None:
        order.append(flow)
    return order


def token_kinds() -> str:
    """Every kind a scan can have without custom rules, and where `[flows.routes]` sends it."""
    from agent.flows.gift import GIFT_KINDS
    from agent.providers.punchh import SEARCH_PARAMS

    rows = ["| kind | default flow | what it is |", "|---|---|---|"]
    for kind in [*(k.value for k in Kind), NFC_UID]:
        flows = ", else ".join(f"`{flow}`" for flow in _default_flows(kind)) or "none"
        rows.append(f"| `{kind}` | {flows} | {_KIND_MEANING[kind]} |")
    takes = [
        "The default flow is the first one listed that has a provider on the lane; `none`: "
        "the scan is only published. A kind a `[[normaliser.custom]]` rule produces goes "
        "nowhere until `[flows.routes]` names a flow for it.",
        "",
        "What a flow does with a kind routed to it: the `card` flow looks any of them up at "
        "the card service, which says whether it is one of its cards; the `coupons` flow "
        "looks the value up as a phone number; the `loyalty` flow identifies a guest only by "
        + ", ".join(f"`{k}`" for k in SEARCH_PARAMS)
        + "; the `gift` flow redeems only "
        + " and ".join(f"`{k}`" for k in sorted(GIFT_KINDS))
        + ".",
    ]
    return "\n".join([*rows, "", *takes])


_KIND_MEANING = {
    Kind.GIFT_VOUCHER_TOKEN: "a URL on one of `normaliser.gift_hosts` (a Gift Local QR code); "
    "the value is its last path segment",
    Kind.URL: "any other http(s) URL",
    Kind.GS1: "a GS1 element string from a GS1 symbology (GS1-128, GS1 DataMatrix or QR, "
    "DataBar); the scan's `ais` has its application identifiers",
    Kind.COUPON: "13 digits starting 981 to 984 or 99, with a good check digit",
    Kind.LOYALTY_RECEIPT: "a Punchh receipt barcode (EAN-13, or the same digits in a QR code) "
    "of a location in `normaliser.receipt_short_keys`, parity digit and key checksum good; the "
    "value is the 12-digit receipt key",
    Kind.PRODUCT_GTIN: "an EAN-13, EAN-8 or GTIN-14 product code",
    Kind.GIFT_VOUCHER_CODE: "12 digits, maybe grouped with spaces or dashes, not from an EAN or "
    "UPC barcode: a gift voucher code, or a 12-digit gift card number",
    Kind.LOYALTY_REDEMPTION_CODE: "7 digits: a Punchh redemption code",
    Kind.LOYALTY_CARD: "16 digits: a loyalty card number, or a gift card number (see "
    "[K-Series cards and Punchh on one lane](#k-series-cards-and-punchh-on-one-lane))",
    Kind.PHONE: "a North American phone number, e.g. `(555) 123-4567` or `+1 555 123 4567`",
    Kind.EMAIL: "an e-mail address (lower-cased)",
    Kind.LOYALTY_USER_QR: "a Punchh user QR code: `Punchh…Punchh`, or `P` and up to 11 letters "
    "or digits, or `S` and 7",
    Kind.LOYALTY_SINGLE_SCAN: "a Punchh single-scan code: a UUID, or 6 to 34 hex digits with at "
    "least one letter",
    Kind.UNKNOWN: "no rule matched",
    NFC_UID: "an NFC tag without a URI or text record: its UID, in upper-case hex",
}


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

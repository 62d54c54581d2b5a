"""The scan pipeline: raw bytes and NFC tags become masked scan messages and reach their flow."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.contract import DeviceRecord, Event, ScanMessage
from agent.devices import DeviceRegistry
from agent.normalise import Normaliser, Token
from agent.normalise.kinds import PUBLIC_KINDS
from agent.scans import NFC_UID, ScanPipeline
from agent.tokens import TokenVault
from drivers.base import DeviceState, NdefRecord, RawScan, StatusChange, TagRead, TagRemoved


class Lane:
    def __init__(self, *, flows: bool = True) -> None:
        self.scans: list[ScanMessage] = []
        self.events: list[Event] = []
        self.records: list[DeviceRecord] = []
        self.flowed: list[tuple[Token, str]] = []
        self.flow_ran = asyncio.Event()
        self.vault = TokenVault()
        devices = DeviceRegistry(self.records.append)
        devices.add("nfc1", "nfc")
        devices.add("scan1", "evdev")
        devices.add("keyed", "keyed")
        self.pipeline = ScanPipeline(
            Normaliser(),
            self.vault,
            devices,
            self.scans.append,
            self.events.append,
            {"gift_voucher_token": self.flow, "gift_voucher_code": self.flow} if flows else {},
        )

    async def flow(self, token: Token, token_id: str) -> None:
        self.flowed.append((token, token_id))
        self.flow_ran.set()


async def test_gift_url_on_an_nfc_tag_works_like_the_qr() -> None:
    lane = Lane()
    uri = NdefRecord(
        "urn:nfc:wkt:U", b"\x04giftlocal.com/v/demo-gift-50", "https://giftlocal.com/v/demo-gift-50"
    )
    await lane.pipeline.handle(
        TagRead("nfc1", bytes.fromhex("03FEFFE011223344"), "Type3Tag", (uri,))
    )
    scan = lane.scans[0]
    assert scan.kind == "gift_voucher_token" and scan.symbology == "nfc"
    assert scan.nfc is not None and scan.nfc.tag_type == "Type3Tag"
    assert scan.nfc.uid.endswith("3344") and "03FEFFE0" not in scan.nfc.uid
    assert (
        scan.nfc.records[0].display is not None
        and "demo-gift-50" not in scan.nfc.records[0].display
    )
    await asyncio.wait_for(lane.flow_ran.wait(), 5)
    token, token_id = lane.flowed[0]
    assert token.value == "demo-gift-50" and token_id == scan.token_id


async def test_tag_without_text_is_identified_by_uid_and_removal_is_an_event() -> None:
    lane = Lane()
    uid = bytes.fromhex("04A224B2C33F80")
    await lane.pipeline.handle(TagRead("nfc1", uid, "Type2Tag"))
    assert lane.scans[0].kind == NFC_UID and lane.scans[0].value is None
    entry = lane.vault.get(lane.scans[0].token_id or "")
    assert entry is not None and entry.token.value == "04A224B2C33F80"
    await lane.pipeline.handle(TagRemoved("nfc1", uid))
    assert lane.events[0].type == "nfc.removed"
    assert lane.events[0].data["uid"] == lane.scans[0].nfc.uid  # type: ignore[union-attr]


UID = bytes.fromhex("04A1B2C3D4E5F6")


@pytest.mark.parametrize(
    ("uid", "keyed"),
    [
        (UID, b"04A1B2C3D4E5F6"),
        (UID, b"04a1b2c3d4e5f6\r\n"),
        (UID, b"04:a1:B2:c3:D4:e5:F6"),
        (UID, b" 04 A1 B2 C3 D4 E5 F6 "),
        (UID, b"04-A1-B2-C3-D4-E5-F6"),
        (bytes.fromhex("DEADBEEF"), b"de:ad:be:ef"),
        (bytes.fromhex("0102030405060708090A"), b"0102030405060708090a"),
    ],
)
def test_a_uid_keyed_as_nfc_is_the_token_a_reader_gives(uid: bytes, keyed: bytes) -> None:
    lane = Lane(flows=False)
    read = lane.pipeline.tag(TagRead("nfc1", uid, "Type2Tag"))
    typed = lane.pipeline.scan(RawScan("keyed", keyed, "nfc"))
    assert (typed.kind, typed.symbology, typed.valid) == (NFC_UID, "nfc", True)
    assert typed.token_id == read.token_id  # the vault's one id for one (kind, value)
    assert typed.display == read.display and typed.value is None
    assert uid.hex().upper() not in typed.display
    read_entry, typed_entry = (
        lane.vault.get(read.token_id or ""),
        lane.vault.get(typed.token_id or ""),
    )
    assert read_entry is not None and typed_entry is not None
    assert (
        typed_entry.token
        == read_entry.token
        == Token(NFC_UID, uid.hex().upper(), "nfc", valid=True, error=None)
    )


@pytest.mark.parametrize(
    ("data", "symbology"),
    [
        (b"https://giftlocal.com/v/demo-gift-50", "nfc"),  # an NDEF URL the POS passed on
        (b"04A1B2C3D4E5", "nfc"),  # 6 bytes: no tag UID has that size
        (b"04A1B2C3D4E5F6A7", "nfc"),
        (b"04:A1 B2:C3", "nfc"),  # two kinds of separator
        (b"04A:1B2:C3", "nfc"),  # a separator inside a byte
        (b"04A1B2C3D4E5F6", "keyed"),  # typed by a cashier: not a tag read
        (b"04A1B2C3D4E5F6", None),
    ],
)
def test_other_text_is_normalised_as_before(data: bytes, symbology: str | None) -> None:
    lane = Lane(flows=False)
    scan = lane.pipeline.scan(RawScan("keyed", data, symbology))
    expected = Normaliser().normalise(data, symbology)
    assert scan.kind == expected.kind != NFC_UID
    entry = lane.vault.get(scan.token_id or "")
    assert entry is not None and entry.token == expected


async def test_counters_and_states_follow_driver_events() -> None:
    lane = Lane()
    await lane.pipeline.handle(StatusChange("scan1", DeviceState.CONNECTED))
    await lane.pipeline.handle(RawScan("scan1", b"5901234123457\r"))
    await lane.pipeline.handle(RawScan("scan1", b"\x00"))
    last = lane.records[-1]
    assert last.state is DeviceState.CONNECTED
    assert (last.counters.scans, last.counters.rejects) == (2, 1)
    assert lane.scans[0].value == "5901234123457"  # a product code is not a secret


async def test_a_replugged_device_counts_a_reconnect() -> None:
    lane = Lane()
    for state in (DeviceState.CONNECTED, DeviceState.DISCONNECTED, DeviceState.CONNECTED):
        await lane.pipeline.handle(StatusChange("scan1", state))
    assert lane.records[-1].counters.reconnects == 1


HINTS = st.none() | st.sampled_from(["keyed", "gs1-128", "qr", "nfc", ""]) | st.text(max_size=12)
RECORDS = st.lists(
    st.builds(
        NdefRecord,
        st.sampled_from(["urn:nfc:wkt:U", "urn:nfc:wkt:T", "text/plain"]) | st.text(max_size=10),
        st.binary(max_size=20),
        st.none() | st.text(max_size=80),
    ),
    max_size=3,
)
DATA = (
    st.binary(max_size=600)
    | st.text(max_size=600).map(lambda text: text.encode("utf-8", "surrogatepass"))
    | st.sampled_from(
        [
            b"100000000001\r\n",
            b"https://giftlocal.com/v/demo-gift-50",
            b"]E05901234123457",
            b"]C1010950600013435210ABC\x1d17251231",
            b"(555) 123-4567",
            b"Someone@Example.com",
            b"P12345",
            b"04:a1:b2:c3:d4:e5:f6\r\n",
        ]
    )
)
EVENTS = st.lists(
    st.builds(RawScan, st.just("scan1"), DATA, HINTS)
    | st.builds(TagRead, st.just("nfc1"), st.binary(max_size=10), st.text(max_size=10), RECORDS),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_any_scan_becomes_one_publishable_message(events: list[RawScan | TagRead]) -> None:
    lane = Lane(flows=False)  # flows run as tasks, which need a loop; this test has none
    for event in events:
        message = (
            lane.pipeline.scan(event) if isinstance(event, RawScan) else lane.pipeline.tag(event)
        )
        assert lane.scans[-1] is message
        message.model_dump_json()  # it can be published
        assert message.valid is (message.error is None) and message.valid is (
            message.token_id is not None
        )
        assert message.value is None or message.kind in PUBLIC_KINDS
    assert len(lane.scans) == len(events)
    counted = {r.device_id: r.counters for r in lane.records}
    for device_id in ("scan1", "nfc1"):
        sent = [s for s in lane.scans if s.device_id == device_id]
        if sent:
            assert counted[device_id].scans == len(sent)
            assert counted[device_id].rejects == sum(not s.valid for s in sent)

"""The fleet's admin ops and the inventory record on a real LaneAgent in the test's process (no
broker: what it would publish is read from its bus's queue, as tests/lane.py does)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent import admin as admin_module
from agent.app import LaneAgent
from agent.bus import Incoming
from agent.config import load_config
from agent.contract import Response
from agent.errors import ErrorCode
from agent.logs import RECENT
from agent.rollout import EXIT_RESTART, ConfigStore

Json = Any


class Lane:
    """A lane agent started from a config file, with the store a daemon would have."""

    def __init__(self, directory: Path) -> None:
        self.key = directory / "giftlocal.key"
        self.key.write_text("s3cr3t-api-key\n")
        self.path = directory / "lane.toml"
        self.path.write_text(
            '[lane]\nstore = "s1"\nlane = "l1"\n'
            f'[state]\ndir = "{directory / "state"}"\n'
            "[providers.sandbox]\n"
            # A key pasted in and commented out: the redaction must catch it too.
            '# api_key = "pasted-by-mistake"\n'
        )
        self.store = ConfigStore(self.path, load_config(self.path).state_dir())
        self.agent = LaneAgent(self.store.start(), config_store=self.store)
        for driver in self.agent.drivers:
            self.agent.devices.add(driver.device_id, driver.kind)

    async def ask(self, op: str, **params: Json) -> Response:
        """As the bus would: answer, publish, audit."""
        body = {"request_id": uuid.uuid4().hex, **params}
        await self.agent.on_request(Incoming(op, json.dumps(body).encode()))
        topic = f"{self.agent.config.base_topic}/response/{op}"
        (answer,) = [
            Response.model_validate_json(m.payload)
            for m in self.agent.bus.outgoing()
            if m.topic == topic and json.loads(m.payload)["request_id"] == body["request_id"]
        ]
        return answer

    def published(self, suffix: str) -> list[Json]:
        topic = f"{self.agent.config.base_topic}/{suffix}"
        return [json.loads(m.payload) for m in self.agent.bus.outgoing() if m.topic == topic]

    def events(self, kind: str) -> list[Json]:
        return [e["data"] for e in self.published("event") if e["type"] == kind]


@pytest.fixture
async def lane(tmp_path: Path) -> AsyncIterator[Lane]:
    made = Lane(tmp_path)
    yield made
    for provider in made.agent.providers:
        await provider.aclose()
    made.agent.orders.book.close_db()


async def test_config_get_is_redacted_and_audited(lane: Lane) -> None:
    answer = await lane.ask("admin.config.get")
    assert answer.data is not None, answer
    assert answer.data["source"] == "base" and answer.data["path"] == str(lane.path)
    assert answer.data["hash"] == hashlib.sha256(lane.path.read_bytes()).hexdigest()
    assert "pasted-by-mistake" not in answer.data["text"] and "<redacted>" in answer.data["text"]
    (audit,) = lane.events("admin.audit")
    assert audit == {
        "op": "admin.config.get",
        "request_id": answer.request_id,
        "status": "ok",
        "detail": "ok",
    }


async def test_an_invalid_config_is_refused_with_every_problem_and_nothing_changes(
    lane: Lane,
) -> None:
    before = lane.path.read_bytes()
    bad = '[mqtt]\nport = 0\n[providers.giftlocal]\napi_key = "inline"\n'
    answer = await lane.ask("admin.config.apply", config=bad)
    assert answer.error is not None and answer.error.code is ErrorCode.INVALID_REQUEST
    problems = answer.error.details and answer.error.details["problems"]
    assert problems == [
        "mqtt.port: must be 1..65535",
        "providers.giftlocal.base_url: required key is missing",
        "providers.giftlocal.api_key: secrets are not accepted in the config file; use "
        'api_key_file = "/path/to/file" or systemd LoadCredential=',
    ]
    assert lane.store.source == "base" and lane.path.read_bytes() == before
    assert lane.store.pending() is None and not lane.store.dir.joinpath("candidate.toml").exists()
    assert lane.agent.admin.exit_code == 0
    (audit,) = lane.events("admin.audit")
    assert audit["status"] == "error" and "mqtt.port" in audit["detail"]


async def test_a_config_for_another_lane_is_refused(lane: Lane) -> None:
    other = '[lane]\nstore = "s1"\nlane = "l2"\n[providers.sandbox]\n'
    answer = await lane.ask("admin.config.apply", config=other)
    assert answer.error is not None and "this lane is lane-agent/s1/l1" in answer.error.message
    # So is one that would move the lane's records elsewhere.
    answer = await lane.ask("admin.config.apply", config="[providers.sandbox]\n")
    assert answer.error is not None and "state.dir: must stay" in answer.error.message
    assert lane.store.source == "base"


async def test_a_valid_config_is_written_and_the_agent_leaves_to_restart(lane: Lane) -> None:
    stopped = asyncio.Event()
    lane.agent.admin._on_leave = stopped.set
    state = lane.agent.config.state_dir()
    new = f'[state]\ndir = "{state}"\n[providers.sandbox]\n[log]\nlevel = "debug"\n'
    answer = await lane.ask("admin.config.apply", config=new)
    assert answer.data is not None and answer.data["changed"] is True, answer
    assert stopped.is_set() and lane.agent.admin.exit_code == EXIT_RESTART
    # The lane's own [lane] was added; the next start runs the new config.
    assert lane.store.source == "fleet"
    assert lane.store.start().log.level == "debug"
    pending = lane.store.pending()
    assert pending is not None and pending.request_id == answer.request_id


async def test_restart_answers_then_leaves(lane: Lane) -> None:
    stopped = asyncio.Event()
    lane.agent.admin._on_leave = stopped.set
    answer = await lane.ask("admin.restart", reason="new certificate")
    assert answer.data == {"exit_code": EXIT_RESTART}
    assert stopped.is_set() and lane.agent.admin.exit_code == EXIT_RESTART


async def test_a_temporary_log_level_reverts_by_itself(
    lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger()
    before = root.level
    monkeypatch.setattr(admin_module, "MINUTE", 0.0)
    try:
        answer = await lane.ask("admin.log_level", level="debug", minutes=5)
        assert answer.data is not None and answer.data["level"] == "debug"
        assert root.level == logging.DEBUG
        assert lane.agent.admin.info().log.level == "debug"
        await asyncio.sleep(0)  # the revert is due at once with a 0-second minute
        await asyncio.sleep(0)
        assert root.level == before
        assert lane.agent.admin.info().log.until is None
    finally:
        root.setLevel(before)


async def test_outbox_list_and_retry(lane: Lane) -> None:
    outbox = lane.agent.orders.outbox
    outbox.add("o1", ["loyalty"], "paid")
    (entry,) = outbox.entries()
    outbox.dead(entry.id, "not_found: no such guest", [])
    listed = await lane.ask("admin.outbox.list", state="dead")
    assert listed.data is not None and listed.data["total"] == 1
    assert listed.data["entries"][0]["key"] == "o1:loyalty:paid"
    info = lane.agent.admin.info()
    assert info.outbox.dead == 1 and not info.health.ok

    retried = await lane.ask("admin.outbox.retry", id=entry.id)
    assert retried.data is not None and retried.data["state"] == "pending"
    missing = await lane.ask("admin.outbox.retry", id=entry.id + 100)
    assert missing.error is not None and missing.error.code is ErrorCode.NOT_FOUND


async def test_the_support_bundle_arrives_in_chunks_and_holds_no_secret(lane: Lane) -> None:
    # What the agent logged itself rides along (setup_logging attaches RECENT as `run` does):
    # under its sandbox it cannot read the journal.
    logging.getLogger().addHandler(RECENT)
    try:
        logging.getLogger("agent.test").warning("a line the support desk needs \x1b[2J")
    finally:
        logging.getLogger().removeHandler(RECENT)
    answer = await lane.ask("admin.diag.bundle", chunk_size=1024)
    assert answer.data is not None, answer
    chunks = lane.published(f"admin/bundle/{answer.request_id}")
    assert len(chunks) == answer.data["chunks"] > 1
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    data = b"".join(base64.b64decode(c["data"]) for c in chunks)
    assert hashlib.sha256(data).hexdigest() == answer.data["sha256"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        config = tar.extractfile("lane-agent-bundle/config.toml")
        assert config is not None
        text = config.read().decode()
        recent = tar.extractfile("lane-agent-bundle/recent-log.txt")
        assert recent is not None
        recent_text = recent.read().decode()
    assert "a line the support desk needs \\x1b[2J" in recent_text  # escaped, as logged
    assert "lane-agent-bundle/health.txt" in names
    assert "pasted-by-mistake" not in text and 'lane = "l1"' in text
    # The bundle is published before its answer.
    topics = [m.topic for m in lane.agent.bus.outgoing()]
    base = lane.agent.config.base_topic
    assert topics.index(f"{base}/response/admin.diag.bundle") > topics.index(
        f"{base}/admin/bundle/{answer.request_id}"
    )


async def test_the_inventory_record_is_retained_and_published_on_change(lane: Lane) -> None:
    lane.agent.admin.publish_info()
    (info,) = lane.published("info")
    assert (info["store"], info["lane"]) == ("s1", "l1")
    assert info["config"]["hash"] == hashlib.sha256(lane.path.read_bytes()).hexdigest()
    assert info["providers"] == ["sandbox"] and info["flows"] == {"gift": "sandbox"}
    assert [d["device_id"] for d in info["devices"]] == ["keyed"]
    assert info["outbox"] == {"pending": 0, "dead": 0, "oldest": None}
    retained = [m for m in lane.agent.bus.outgoing() if m.topic.endswith("/info")]
    assert all(m.retain for m in retained)

    lane.agent.admin.publish_info()  # nothing changed but the clock: not published again
    assert len(lane.published("info")) == 1
    lane.agent.admin.errors.emit(
        logging.makeLogRecord({"name": "agent.x", "levelno": logging.ERROR, "msg": "it broke"})
    )
    lane.agent.admin.publish_info()
    assert lane.published("info")[-1]["last_error"]["message"] == "agent.x: it broke"


async def test_a_pending_config_not_online_by_its_deadline_is_rolled_back_by_the_agent(
    lane: Lane,
) -> None:
    """A wrong broker address: the agent runs but never gets online. It restores the previous
    config itself at the deadline and leaves to be started again with it."""
    store = lane.store
    state = lane.agent.config.state_dir()
    text = f'[lane]\nstore = "s1"\nlane = "l1"\n[state]\ndir = "{state}"\n[mqtt]\nport = 9\n'
    store.apply(store.stage(text + "[providers.sandbox]\n"), "r-deadline", timeout=0.0)
    stop = asyncio.Event()
    running = asyncio.create_task(lane.agent.admin.run(stop))
    async with asyncio.timeout(10):
        await stop.wait()
    running.cancel()
    assert lane.agent.admin.exit_code == EXIT_RESTART
    assert store.source == "base" and store.pending() is None
    last = store.last_apply()
    assert last is not None and last.record.reason == "not back online within 0 s"

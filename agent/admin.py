"""The lane's side of fleet administration: its retained inventory record (`{base}/info`) and the
`admin.*` ops, each audited as an event (docs/fleet.md).

The broker's ACL decides who may send `admin.*` (a fleet identity, through the store's bridge;
never a POS screen): an MQTT message does not say who sent it, so the agent cannot check.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import tomllib
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, cast, get_args

from pydantic import BaseModel

from agent import __version__
from agent.config import Config, ConfigError, load_config
from agent.contract import DeviceHealthParams, DeviceRecord, Event, Response, utc_now
from agent.contract.admin import (
    ADMIN_PREFIX,
    AdminAuditData,
    AdminConfigGetParams,
    AdminRestartParams,
    AdminRestartResult,
    BundleChunk,
    BundleParams,
    BundleResult,
    ConfigAppliedData,
    ConfigApplyParams,
    ConfigApplyResult,
    ConfigInfo,
    ConfigRolledBackData,
    ConfigText,
    HealthSummary,
    InfoDevice,
    LaneInfo,
    LastError,
    LogLevel,
    LogLevelInfo,
    LogLevelParams,
    OutboxListEntry,
    OutboxListParams,
    OutboxListResult,
    OutboxRetryParams,
    OutboxSummary,
)
from agent.errors import ErrorCode, LaneError
from agent.outbox import Entry, EntryState
from agent.rollout import EXIT_RESTART, ConfigStore
from drivers.base import DeviceState

if TYPE_CHECKING:
    from agent.app import LaneAgent
    from agent.flows.base import Handler

log = logging.getLogger(__name__)

# How often the record is rebuilt and published if it changed (outbox depth, last error), and
# how often it is published anyway (uptime): 2,000 lanes are then ~2 messages a second centrally.
INFO_CHECK = 60.0
INFO_REFRESH = 900.0
# A support bundle larger than this is refused rather than queued (journal and dmesg are capped
# well below it by agent/diag.py).
MAX_BUNDLE = 8 * 1024 * 1024
MINUTE = 60.0  # seconds; a test makes it shorter


class LastErrorHandler(logging.Handler):
    """Remembers the agent's last ERROR line for `{base}/info` (log lines are masked already)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: LastError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = f"{record.name}: {record.getMessage()}"[:500]
        self.last = LastError(at=utc_now(), message=message)


def for_this_lane(text: str, config: Config) -> str:
    """One config for many lanes: `${store}` and `${lane}` become this lane's ids (its broker
    user name is its lane id, docs/security.md), and a config without a `[lane]` table gets
    this lane's."""
    text = text.replace("${store}", config.lane.store).replace("${lane}", config.lane.lane)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text  # load_config says what is wrong with it
    if "lane" in data:
        return text
    store, lane = json.dumps(config.lane.store), json.dumps(config.lane.lane)
    return f"[lane]\nstore = {store}\nlane = {lane}\n\n{text}"


def identity_problems(new: Config, running: Config) -> list[str]:
    """What a config must keep to be applied over the bridge: the fleet would lose the lane
    (another base topic) or the lane its records (another state directory)."""
    problems = []
    if new.base_topic != running.base_topic:
        problems.append(
            f"lane, store or mqtt.prefix: the config is for {new.base_topic}, this lane is "
            f"{running.base_topic}"
        )
    if new.state_dir() != running.state_dir():
        problems.append(f"state.dir: must stay {running.state_dir()}")
    return problems


def _entry_info(entry: Entry) -> OutboxListEntry:
    return OutboxListEntry(
        id=entry.id,
        key=entry.key,
        state=entry.state.value,
        attempts=entry.attempts,
        next_at=entry.next_at,
        created=entry.created,
        last_error=entry.last_error,
    )


class Admin:
    """The admin ops of one lane agent and its inventory record."""

    def __init__(self, agent: LaneAgent, store: ConfigStore | None) -> None:
        self._agent = agent
        self.store = store
        self.started = utc_now()
        self._started_at = time.monotonic()
        self.errors = LastErrorHandler()
        self.exit_code = 0
        self._leaving: str | None = None
        self._on_leave: Callable[[], None] = lambda: None
        root = logging.getLogger().getEffectiveLevel()
        name = logging.getLevelName(root).lower()
        self._base_level = (
            cast(LogLevel, name) if name in get_args(LogLevel) else agent.config.log.level
        )
        self._level = LogLevelInfo(level=self._base_level)
        self._revert: asyncio.TimerHandle | None = None
        self._published: dict[str, object] | None = None
        self._device_states: dict[str, DeviceState] = {}

    def handlers(self) -> dict[str, Handler]:
        return {
            "admin.config.get": self._config_get,
            "admin.config.apply": self._config_apply,
            "admin.restart": self._restart,
            "admin.log_level": self._log_level,
            "admin.outbox.list": self._outbox_list,
            "admin.outbox.retry": self._outbox_retry,
            "admin.diag.bundle": self._bundle,
        }

    # --- the agent's hooks ------------------------------------------------------------------------

    def answered(self, op: str, answer: Response) -> None:
        """Audit an admin op once answered; leave now if it asked the agent to restart."""
        if not op.startswith(ADMIN_PREFIX):
            return
        detail = "ok" if answer.error is None else f"{answer.error.code}: {answer.error.message}"
        audit = AdminAuditData(
            op=op, request_id=answer.request_id, status=answer.status, detail=detail[:500]
        )
        self._emit("admin.audit", audit)
        log.warning("admin op %s (request %s): %s", op, answer.request_id, detail)
        if self._leaving is not None:
            self.leave(EXIT_RESTART, self._leaving)

    def leave(self, code: int, reason: str) -> None:
        """Stop the agent with exit status `code`; the retained offline state says why."""
        self.exit_code = code
        self._agent.bus.stopping(reason)
        self._on_leave()

    def device_changed(self, record: DeviceRecord) -> None:
        """A device's state (not its counters) changes the record."""
        if self._device_states.get(record.device_id) is not record.state:
            self._device_states[record.device_id] = record.state
            self.publish_info()

    def announce(self) -> None:
        """The outcome of an apply that the previous process could not report, as an event."""
        last = self.store.take_unannounced() if self.store is not None else None
        if last is None:
            return
        record = last.record
        if record.outcome == "applied":
            self._emit(
                "config.applied",
                ConfigAppliedData(request_id=record.request_id, config_hash=record.config_hash),
            )
        else:
            data = ConfigRolledBackData(
                request_id=record.request_id,
                config_hash=record.config_hash,
                restored_hash=last.restored_hash or "",
                reason=record.reason or "",
            )
            self._emit("config.rolled_back", data)

    def online(self) -> None:
        """The agent is connected: a pending config has come back, keep it as the last good."""
        if self.store is not None and self.store.confirm() is not None:
            self.announce()
        self.publish_info()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the record fresh; restore the previous config if a pending one misses its
        deadline."""
        self._on_leave = stop.set
        logging.getLogger().addHandler(self.errors)
        try:
            await asyncio.gather(self._refresh(), self._watch_deadline())
        finally:
            logging.getLogger().removeHandler(self.errors)
            if self._revert is not None:
                self._revert.cancel()

    async def _refresh(self) -> None:
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(INFO_CHECK)
            force = time.monotonic() - refreshed >= INFO_REFRESH
            if force:
                refreshed = time.monotonic()
            self.publish_info(force=force)

    async def _watch_deadline(self) -> None:
        pending = self.store.pending() if self.store is not None else None
        if pending is None:
            return
        await asyncio.sleep(max(0.0, (pending.deadline - utc_now()).total_seconds()))
        assert self.store is not None
        if self.store.roll_back(f"not back online within {pending.timeout:g} s") is not None:
            self.leave(EXIT_RESTART, "config rolled back")

    # --- the inventory record ---------------------------------------------------------------------

    def info(self) -> LaneInfo:
        agent = self._agent
        config = agent.config
        now = utc_now()
        records = agent.devices.all()
        pending, dead, oldest = agent.orders.outbox.summary()
        problems = [
            f"device {r.device_id}: {r.state}" + (f" ({r.last_error})" if r.last_error else "")
            for r in records
            if r.state is not DeviceState.CONNECTED
        ]
        if dead:
            problems.append(f"outbox: {dead} entries given up (admin.outbox.list)")
        flows = {f.name: f.provider.name for f in agent.flows}
        return LaneInfo(
            store=config.lane.store,
            lane=config.lane.lane,
            version=__version__,
            started=self.started,
            uptime_s=int(time.monotonic() - self._started_at),
            config=self._config_info(),
            devices=[
                InfoDevice(device_id=r.device_id, kind=r.kind, state=r.state) for r in records
            ],
            providers=config.configured_providers(),
            flows=flows,
            health=HealthSummary(ok=not problems, problems=problems),
            outbox=OutboxSummary(pending=pending, dead=dead, oldest=oldest),
            last_error=self.errors.last,
            log=self._level,
            ts=now,
        )

    def _config_info(self) -> ConfigInfo:
        store = self.store
        if store is None:
            return ConfigInfo(hash="", source="base", path="")
        pending = store.pending()
        last = store.last_apply()
        return ConfigInfo(
            hash=store.hash(),
            source=store.source,
            path=str(store.path),
            pending=pending.request_id if pending is not None else None,
            last_apply=last.record if last is not None else None,
        )

    def publish_info(self, *, force: bool = False) -> None:
        """Publish the record retained if anything but its clock changed (or when forced)."""
        info = self.info()
        content = info.model_dump(mode="json", exclude={"uptime_s", "ts"})
        if force or content != self._published:
            self._published = content
            self._agent.bus.set_retained("info", info)

    # --- the ops ----------------------------------------------------------------------------------

    def _require_store(self) -> ConfigStore:
        if self.store is None:
            raise LaneError(
                ErrorCode.NOT_CONFIGURED, "this agent was not started from a config file"
            )
        return self.store

    async def _config_get(self, _params: AdminConfigGetParams) -> ConfigText:
        from agent.diag import redact

        store = self._require_store()
        data = store.read()
        return ConfigText(
            path=str(store.path),
            source=store.source,
            hash=hashlib.sha256(data).hexdigest(),
            text=redact(data.decode("utf-8", "replace")),
        )

    async def _config_apply(self, params: ConfigApplyParams) -> ConfigApplyResult:
        store = self._require_store()
        pending = store.pending()
        if pending is not None:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"config apply {pending.request_id} is still waiting for the agent to come "
                "back online; try again after it",
            )
        running = self._agent.config
        candidate = store.stage(for_this_lane(params.config, running))
        try:
            new = load_config(candidate)
            problems = identity_problems(new, running)
        except ConfigError as exc:
            problems = [p.replace(str(candidate), "config") for p in exc.problems]
        if problems:
            candidate.unlink()
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"config refused, nothing changed: {len(problems)} problem(s): "
                + "; ".join(problems),
                details={"problems": problems},
            )
        result = store.apply(candidate, params.request_id, params.timeout)
        if result.changed:
            self._leaving = f"applying config {result.config_hash[:12]}"
        return result

    async def _restart(self, params: AdminRestartParams) -> AdminRestartResult:
        self._leaving = "restart" + (f": {params.reason}" if params.reason else "")
        return AdminRestartResult(exit_code=EXIT_RESTART)

    async def _log_level(self, params: LogLevelParams) -> LogLevelInfo:
        if self._revert is not None:
            self._revert.cancel()
        logging.getLogger().setLevel(params.level.upper())
        seconds = params.minutes * MINUTE
        until = utc_now() + timedelta(seconds=seconds)
        self._revert = asyncio.get_running_loop().call_later(seconds, self._unset)
        self._level = LogLevelInfo(level=params.level, until=until)
        self.publish_info()
        return self._level

    def _unset(self) -> None:
        self._revert = None
        logging.getLogger().setLevel(self._base_level.upper())
        self._level = LogLevelInfo(level=self._base_level)
        log.warning("log level back to %s", self._base_level)
        self.publish_info()

    async def _outbox_list(self, params: OutboxListParams) -> OutboxListResult:
        outbox = self._agent.orders.outbox
        states = {
            "open": (EntryState.PENDING, EntryState.DEAD),
            "pending": (EntryState.PENDING,),
            "dead": (EntryState.DEAD,),
            "all": tuple(EntryState),
        }[params.state]
        entries = [e for e in outbox.entries() if e.state in states]
        return OutboxListResult(
            entries=[_entry_info(e) for e in entries[: params.limit]], total=len(entries)
        )

    async def _outbox_retry(self, params: OutboxRetryParams) -> OutboxListEntry:
        orders = self._agent.orders
        entry = orders.outbox.get(params.id)
        if entry is None:
            raise LaneError(ErrorCode.NOT_FOUND, f"no outbox entry {params.id}")
        if not orders.outbox.retry_now(entry.id):
            raise LaneError(ErrorCode.INVALID_REQUEST, f"entry {entry.id} ({entry.key}) is done")
        orders.worker.wake()
        retried = orders.outbox.get(entry.id)
        assert retried is not None
        return _entry_info(retried)

    async def _bundle(self, params: BundleParams) -> BundleResult:
        from agent import diag, logs

        store = self._require_store()
        health = await self._agent._device_health(DeviceHealthParams(request_id="bundle"))
        health_text = "".join(
            f"{item.name:<24}  {'OK  ' if item.ok else 'FAIL'}  {item.detail}\n"
            for item in health.items
        )
        files = await asyncio.to_thread(
            diag.bundle_files, store.path, self._agent.config, health_text, logs.RECENT.text()
        )
        data = diag.archive(files)
        if len(data) > MAX_BUNDLE:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"the bundle is {len(data)} bytes, over {MAX_BUNDLE}: use lane-agent diag bundle",
            )
        pieces = [data[i : i + params.chunk_size] for i in range(0, len(data), params.chunk_size)]
        room = self._agent.config.mqtt.outgoing_queue - self._agent.bus.queued()
        if len(pieces) > room:
            raise LaneError(
                ErrorCode.INVALID_REQUEST,
                f"{len(pieces)} chunks do not fit the {room} free places of mqtt.outgoing_queue: "
                "ask for larger chunks",
            )
        suffix = f"admin/bundle/{params.request_id}"
        for seq, piece in enumerate(pieces):
            chunk = BundleChunk(
                request_id=params.request_id,
                seq=seq,
                chunks=len(pieces),
                data=base64.b64encode(piece).decode(),
            )
            self._agent.bus.publish(suffix, chunk)
        return BundleResult(
            topic=self._agent.bus.topic(suffix),
            chunks=len(pieces),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            name=diag.bundle_name(),
        )

    def _emit(self, kind: str, data: BaseModel) -> None:
        self._agent.bus.publish("event", Event(type=kind, data=data.model_dump(mode="json")))

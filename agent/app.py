"""Wires one lane agent together from its config and runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import sqlite3
from collections.abc import Mapping
from typing import cast

from agent import __version__, faults
from agent.admin import Admin
from agent.bus import Bus, Incoming, ignore_closed_socket_race
from agent.config import EXIT_CONFIG, Config, DeviceSettings, FifoDeviceSettings
from agent.contract import (
    OPS,
    DeviceHealthParams,
    DeviceRecord,
    Event,
    GiftRedeemParams,
    GiftReverseParams,
    GiftValidateParams,
    HealthItem,
    HealthResult,
    RedeemResult,
    ReverseResult,
    ScanInjectParams,
    ScanMessage,
    ValidateResult,
)
from agent.devices import DeviceRegistry, once_per_turn
from agent.errors import ErrorCode, LaneError
from agent.flows.base import FlowContext, Handler, LaneFlow, Provider, TenderFlow
from agent.flows.orders import OrderDesk
from agent.homeassistant import Discovery
from agent.limits import RequestLimiter, ScanLimiter
from agent.normalise import Normaliser, unescape
from agent.orders import OrderBook
from agent.registry import FLOWS, ProviderEnv, flow_spec, load, provider_spec
from agent.requests import UNLIMITED_OPS, RequestRouter, ResponseStore
from agent.rollout import EXIT_RESTART, ConfigStore
from agent.scans import FlowHandler, ScanPipeline
from agent.secrets import read_secret
from agent.supervisor import Supervisor
from agent.systemd import Notifier, run_watchdog, watchdog_interval
from agent.tokens import TokenVault
from drivers.base import Driver
from drivers.fifo import FifoScanner
from drivers.keyed import KeyedEntry
from drivers.settings import driver_class

log = logging.getLogger(__name__)


def _not_configured(op: str) -> Handler:
    async def refuse(_params: object) -> object:
        raise LaneError(
            ErrorCode.NOT_CONFIGURED,
            f"{op}: this lane has no provider for it ([providers] and [flows] in the config)",
        )

    return refuse


def build_provider(config: Config, name: str, env: ProviderEnv) -> Provider:
    """The adapter of the provider `name`, importing its module now (and only now)."""
    settings = config.provider_settings(name)
    if settings is None:
        raise LaneError(ErrorCode.NOT_CONFIGURED, f"providers.{name}: the table is missing")
    adapter: Provider = load(provider_spec(name).adapter).create(settings, env)
    return adapter


def build_flows(
    ctx: FlowContext, env: ProviderEnv, transports: Mapping[str, object]
) -> list[LaneFlow]:
    """Every flow the config gives a provider, in the registry's order; a provider running two
    flows is one adapter."""
    made: dict[str, Provider] = {}
    flows: list[LaneFlow] = []
    for spec in FLOWS:
        name = ctx.config.flow_provider(spec.name)
        if name is None:
            continue
        if name not in made:
            own = dataclasses.replace(env, transport=transports.get(name))
            made[name] = build_provider(ctx.config, name, own)
        flows.append(load(spec.flow)(made[name], ctx))
    return flows


def build_driver(device_id: str, settings: DeviceSettings) -> Driver:
    """The device's driver, importing its module now: evdev, pyserial, pyusb and nfcpy are
    loaded only on a lane that has such a device."""
    if isinstance(settings, FifoDeviceSettings):
        decode = unescape if settings.unescape else None
        symbology = settings.symbology
        return FifoScanner(device_id, settings.path, decode=decode, symbology=symbology)
    driver: Driver = driver_class(settings.type)(device_id, settings)
    return driver


def build_drivers(config: Config, keyed: KeyedEntry) -> list[Driver]:
    return [keyed, *(build_driver(name, s) for name, s in config.devices.items())]


class LaneAgent:
    """Everything one lane runs: bus, drivers, pipeline, flows, request handling."""

    def __init__(
        self,
        config: Config,
        notifier: Notifier | None = None,
        transports: Mapping[str, object] | None = None,
        config_store: ConfigStore | None = None,
    ) -> None:
        """`transports`: provider name → the httpx transport that replaces its network, for
        in-process tests (simulators.transport). `config_store`: where the config came from,
        for the fleet's admin ops (agent/rollout.py)."""
        self.config = config
        self.notifier = notifier or Notifier()
        state_dir = config.state_dir()
        state_dir.mkdir(parents=True, exist_ok=True)
        self.bus = Bus(
            config.mqtt,
            config.base_topic,
            __version__,
            client_id=config.mqtt.client_id
            or f"lane-agent-{config.lane.store}-{config.lane.lane}-{socket.gethostname()}",
            password=read_secret(config.mqtt.password_file, "mqtt_password"),
            on_status=self.notifier.status,
        )
        self.vault = TokenVault(ttl=config.state.token_ttl, max_entries=config.state.token_max)
        self.devices = DeviceRegistry(once_per_turn(self._device_changed))
        self.keyed = KeyedEntry()
        self.drivers = build_drivers(config, self.keyed)
        if config.homeassistant.discovery:
            devices = [(driver.device_id, driver.kind) for driver in self.drivers]
            Discovery(config, devices, __version__).attach(self.bus)
        book = OrderBook(state_dir / "orders.sqlite")
        ctx = FlowContext(config, self.vault, book, self._emit)
        self.tenders = book.tenders
        self._reference = ctx.reference
        env = ProviderEnv(config.lane.store, config.lane.lane, state_dir)
        self.flows = build_flows(ctx, env, transports or {})
        self.tender_flows: dict[str, TenderFlow] = {
            f.name: cast(TenderFlow, f) for f in self.flows if flow_spec(f.name).tenders
        }
        self.orders = OrderDesk(book, self.flows, self._emit)
        self.providers: list[Provider] = list(
            {id(f.provider): f.provider for f in self.flows}.values()
        )
        on_scan: dict[str, FlowHandler] = {flow.name: flow.on_scan for flow in self.flows}
        routes = config.kind_routes()
        flows = {kind: on_scan[flow] for kind, flow in routes.items() if flow in on_scan}
        self.pipeline = ScanPipeline(
            Normaliser(config.normaliser),
            self.vault,
            self.devices,
            lambda message: self.bus.publish("scan", message),
            self._emit,
            flows,
            ScanLimiter(config.scans.rate, config.scans.burst, self.devices),
        )
        self.supervisor = Supervisor(self.pipeline.handle)
        self.admin = Admin(self, config_store)
        self.router = RequestRouter(
            ResponseStore(state_dir / "requests.sqlite"),
            self._handlers(),
            max_payload=config.mqtt.max_payload,
            limiter=RequestLimiter(
                config.mqtt.request_rate, config.mqtt.request_burst, config.mqtt.request_pending
            ),
        )

    def _handlers(self) -> dict[str, Handler]:
        """Every op of the contract: the lane's own, the flows', and for a flow this lane does
        not run, an answer saying so."""
        handlers: dict[str, Handler] = {
            "scan.inject": self._scan_inject,
            "gift.validate": self._validate,
            "gift.redeem": self._redeem,
            "gift.reverse": self._reverse,
            "order.update": self.orders.update,
            "order.paid": self.orders.paid,
            "order.void": self.orders.void,
            "order.refund": self.orders.refund,
            "order.get": self.orders.get,
            "device.health": self._device_health,
        }
        for flow in self.flows:
            handlers |= flow.handlers()
        handlers |= self.admin.handlers()
        return {op: handlers.get(op) or _not_configured(op) for op in OPS}

    def _emit(self, event: Event) -> None:
        self.bus.publish("event", event)

    def _device_changed(self, record: DeviceRecord) -> None:
        self.bus.set_retained(f"devices/{record.device_id}", record)
        self.admin.device_changed(record)

    async def on_request(self, request: Incoming) -> None:
        answer = await self.router.handle(request.op, request.payload, refusal=request.refusal)
        urgent = request.op in UNLIMITED_OPS
        self.bus.publish(f"response/{request.op}", answer, urgent=urgent)
        if request.reply_to is not None:
            self.bus.reply(request.reply_to, answer, urgent=urgent)
        self.admin.answered(request.op, answer)

    async def _scan_inject(self, params: ScanInjectParams) -> ScanMessage:
        return self.pipeline.scan(self.keyed.scan(params.data.encode(), params.symbology))

    async def _validate(self, params: GiftValidateParams) -> ValidateResult:
        return await self._tender_flow(self._routed(params.token_id)).validate(params)

    async def _redeem(self, params: GiftRedeemParams) -> RedeemResult:
        """A gift card payment when the token was routed to the card flow, else a voucher; a
        request that already took a tender goes back to the flow that took it (its retry after
        a restart, which forgot the token, is answered from there, never taken twice)."""
        earlier = self.tenders.get(self._reference(params.request_id))
        name = earlier.flow if earlier is not None else self._routed(params.token_id)
        return await self._tender_flow(name).redeem(params)

    async def _reverse(self, params: GiftReverseParams) -> ReverseResult:
        """Routed by who owns the transaction (its tender record, of any order), never by
        trying providers in turn."""
        tender = self.tenders.owner(params.transaction_id)
        if tender is None:
            raise LaneError(
                ErrorCode.NOT_FOUND,
                f"transaction {params.transaction_id} was not taken on this lane: no voucher "
                "redemption or card payment of it is recorded here",
            )
        return await self._tender_flow(tender.flow).reverse(params, tender)

    def _routed(self, token_id: str) -> str:
        """The tender flow the token's kind is routed to; vouchers when none takes it (whose
        flow then says what the token is not)."""
        return next((f.name for f in self.tender_flows.values() if f.handles(token_id)), "gift")

    def _tender_flow(self, name: str) -> TenderFlow:
        flow = self.tender_flows.get(name)
        if flow is None:
            what = "gift card" if name == "card" else "gift voucher"
            raise LaneError(
                ErrorCode.NOT_CONFIGURED,
                f"no {what} provider is configured on this lane ([providers] in the config)",
            )
        return flow

    async def _device_health(self, params: DeviceHealthParams) -> HealthResult:
        items: list[HealthItem] = []
        for device_id, driver in self.supervisor.drivers.items():
            if params.device_id in (None, device_id):
                report = await driver.check_health(params.level)
                items.append(HealthItem(name=device_id, ok=report.ok, detail=report.detail))
        if params.device_id is not None and not items:
            raise LaneError(ErrorCode.INVALID_REQUEST, f"no device '{params.device_id}'")
        if params.device_id is None:
            connected = self.bus.connected.is_set()
            items.append(HealthItem(name="broker", ok=connected, detail=self._broker_detail()))
            for provider in self.providers:
                ok, detail = await provider.check_health()
                items.append(HealthItem(name=f"provider:{provider.name}", ok=ok, detail=detail))
        return HealthResult(ok=all(i.ok for i in items), items=items)

    def _broker_detail(self) -> str:
        where = f"{self.config.mqtt.host}:{self.config.mqtt.port}"
        if self.bus.connected.is_set():
            return f"connected to {where}, {self.bus.queued()} queued, {self.bus.counters()}"
        return f"not connected to {where}: {self.bus.last_error or 'connecting'}"

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; READY is sent once the broker is connected."""
        for driver in self.drivers:
            self.devices.add(driver.device_id, driver.kind)
        bus_task = asyncio.create_task(self.bus.run(self.on_request), name="bus")
        outbox_task = asyncio.create_task(self.orders.worker.run(), name="outbox")
        self.supervisor.start(self.drivers)
        self.admin.announce()
        admin_task = asyncio.create_task(self.admin.run(stop), name="admin")
        interval = watchdog_interval()
        watchdog = (
            asyncio.create_task(run_watchdog(self.notifier, self.bus.healthy, interval))
            if interval
            else None
        )
        try:
            connected = asyncio.create_task(self.bus.connected.wait())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({connected, stopped, bus_task}, return_when=asyncio.FIRST_COMPLETED)
            connected.cancel()
            if self.bus.connected.is_set():
                self.notifier.ready(self._ready_status())
                log.info("lane-agent %s ready: %s", __version__, self._ready_status())
                self.admin.online()
            await asyncio.wait({stopped, bus_task}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if bus_task.done():
                bus_task.result()
        finally:
            self.notifier.stopping("stopping")
            if watchdog is not None:
                watchdog.cancel()
            outbox_task.cancel()
            admin_task.cancel()
            await self.supervisor.stop()
            self.bus.stopping("stopped")
            await cancel_for_sure(bus_task)
            for provider in self.providers:
                await provider.aclose()

    def _ready_status(self) -> str:
        devices = ", ".join(d.device_id for d in self.drivers)
        providers = ", ".join(p.name for p in self.providers) or "none"
        broker = f"{self.config.mqtt.host}:{self.config.mqtt.port}"
        return f"{self.config.base_topic} on {broker}; devices: {devices}; providers: {providers}"


async def cancel_for_sure(task: asyncio.Task[None]) -> None:
    """Cancel until it is done: on Python 3.11 a cancellation that lands as an awaited inner
    future completes is lost (asyncio.wait_for inside the MQTT client), which left the agent
    running after SIGTERM."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    with contextlib.suppress(asyncio.CancelledError):
        task.result()


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_daemon(config: Config, store: ConfigStore | None = None) -> int:
    """Run the agent; its exit status: 0 when stopped, EXIT_RESTART when it asked to be
    started again (admin ops, a rollback), EXIT_CONFIG when it cannot run with `config`."""
    stop = asyncio.Event()
    install_signal_handlers(stop)
    ignore_closed_socket_race(asyncio.get_running_loop())
    faults.install(asyncio.get_running_loop())
    try:
        agent = LaneAgent(config, config_store=store)
    except LaneError as exc:  # a provider without its key, a ledger that cannot be opened
        return _refuse(exc.message, store)
    except OSError as exc:  # the state directory broke after `run` checked it
        return _refuse(f"{exc.filename or config.state_dir()}: {exc.strerror or exc}", None)
    except sqlite3.Error as exc:
        return _refuse(f"the agent's records in {config.state_dir()}: {exc}", None)
    await agent.run(stop)
    return agent.admin.exit_code


def _refuse(reason: str, store: ConfigStore | None) -> int:
    """One line in the log and the unit's status. A fleet-applied config that cannot start is
    rolled back to the last good one and the agent asks to be started again (EXIT_RESTART);
    otherwise the exit status systemd does not restart on: starting again cannot fix a missing
    key or a full disk."""
    log.error("cannot start: %s", reason)
    if store is not None and store.roll_back(f"cannot start: {reason}") is not None:
        Notifier().status(f"config rolled back: {reason}")
        return EXIT_RESTART
    Notifier().status(f"refusing to start: {reason}")
    return EXIT_CONFIG

"""`lane-agent kseries-notify`: K-Series real-time notifications (RTN) settle the card payments
of the lane that took them.

Seed 000 ends the gift card payment with "Listen to real-time notification webhooks for
finalized receipt details". K-Series posts them from its cloud to one URL per integration, so
the receiver is a service on the fleet's central host (reachable from the internet behind a TLS
proxy), not on a lane: lanes sit on store networks that Lightspeed cannot reach, and the agent
has no web server of its own. The MQTT fleet bridge (docs/fleet.md) carries the result to the
lane as the lane's own ops, so every money rule of the order desk holds unchanged:

- a finalized receipt whose order is still open on the lane → `order.paid`;
- a voided receipt → `order.void` while the order is open (or abandoned), `order.refund` of the
  whole order once it is paid; nothing when the lane already gave it back.

Which lane took the card payment: every lane publishes `card.paid` with the order id (the
K-Series account identifier the web extension gave in `order.update`); the receiver keeps those
in a small SQLite index, so a notification for a receipt without a card payment (nearly all of
them) costs nothing. Authenticity is K-Series' own scheme: the webhook is registered with HTTP
Basic credentials (`withBasicAuth`, `username`, `password`), and a request without them is
refused before its body is read. Redelivery is harmless: each op's `request_id` is made from
the receipt and the op, so the lane answers a repeat with its first answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hmac
import json
import logging
import sqlite3
import threading
import tomllib
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, Protocol

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.bus import backoff, tls_context
from agent.config import DEFAULT_STATE_DIR, MqttSettings, Port
from agent.contract import Event, Response
from agent.errors import LaneError
from agent.orders import OrderStatus
from agent.secrets import Secret, read_secret

log = logging.getLogger(__name__)

# UNCERTAIN: K-Series publishes no gift card RTN payload ("RTN Examples" was not retrieved).
# These names come from its public notification docs (order/payment notifications carry
# `ikentooAccountIdentifier`; "Transaction Details" carries `initialAccountId` "to correlate the
# transaction with the initial account, such on REFUND or VOID") and from the web extension's
# `identifier`, which the lane uses as the order id (web/kseries.js). The first one present wins.
ACCOUNT_FIELDS: Final = ("ikentooAccountIdentifier", "accountIdentifier", "identifier")
VOID_ACCOUNT_FIELD: Final = "initialAccountId"
# UNCERTAIN: where a notification says what happened to the receipt, and the values that mean
# "finalized" and "voided" (public: notificationType OPEN/UPDATE/CLOSE in "POS Order Types";
# Account events CLOSED; VOID in "Transaction Details"). Only exact values move money; any other
# value, or one field saying "voided" and another "finalized", is logged and ignored.
KIND_FIELDS: Final = ("notificationType", "type", "status", "eventType")
FINALIZED_VALUES: Final = frozenset({"CLOSE", "CLOSED", "FINALIZED"})
VOIDED_VALUES: Final = frozenset({"VOID", "VOIDED"})
# Public ("Transaction Details"): deliveries carry an idempotency key; logged to match repeats.
_KIND_VALUES: Final = {
    "finalized": FINALIZED_VALUES,
    "voided": VOIDED_VALUES,
}
IDEMPOTENCY_HEADER: Final = "X-Lightspeed-Idempotency-Key"

MAX_BODY: Final = 1_000_000  # an RTN with every line and payment expanded is far smaller
INDEX_DAYS: Final = 90  # card payments older than this are forgotten (a void comes sooner)


class ReceiptKind(enum.StrEnum):
    FINALIZED = "finalized"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class ReceiptNotice:
    """What the receiver acts on: which K-Series account (the lane's order id) and what
    happened to its receipt."""

    kind: ReceiptKind
    account: str


class UnreadableNotice(ValueError):
    """The body is not a JSON object: answered 400."""


def _text(value: object) -> str | None:
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None


def read_notice(body: bytes) -> ReceiptNotice | None:
    """The finalized or voided receipt a notification tells of; None for every other
    notification (opened, updated, payments...), which the receiver acknowledges and ignores.
    Reads the names above first and nothing else: unknown fields never fail a notification."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableNotice(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UnreadableNotice("not a JSON object")
    values = {str(data[f]).upper() for f in KIND_FIELDS if isinstance(data.get(f), str)}
    kinds = {
        kind
        for kind, known in (
            (ReceiptKind.FINALIZED, FINALIZED_VALUES),
            (ReceiptKind.VOIDED, VOIDED_VALUES),
        )
        if values & known
    }
    if len(kinds) != 1:
        if kinds:
            log.error("notification says both finalized and voided (%s): ignored", sorted(values))
        else:
            log.info("notification %s: not a finalized or voided receipt", sorted(values) or "-")
        return None
    kind = kinds.pop()
    fields = (VOID_ACCOUNT_FIELD, *ACCOUNT_FIELDS) if kind is ReceiptKind.VOIDED else ACCOUNT_FIELDS
    account = next((t for f in fields if (t := _text(data.get(f))) is not None), None)
    if account is None:
        log.warning("%s receipt without an account identifier (%s): ignored", kind, sorted(data))
        return None
    return ReceiptNotice(kind, account[:64])


def basic_auth_ok(header: str | None, username: str, password: Secret) -> bool:
    """Whether an `Authorization` header carries these Basic credentials (constant time)."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    user, sep, secret = given.partition(b":")
    user_ok = hmac.compare_digest(user, username.encode())
    secret_ok = hmac.compare_digest(secret, password.reveal().encode())
    return bool(sep) and user_ok and secret_ok


def plan(kind: ReceiptKind, status: OrderStatus) -> str | None:
    """The lane op that brings an order in `status` in line with the receipt; None when the
    lane already is (or, for a finalized receipt the lane gave back, cannot be: logged)."""
    if kind is ReceiptKind.FINALIZED:
        return "order.paid" if status is OrderStatus.OPEN else None
    if status in (OrderStatus.OPEN, OrderStatus.ABANDONED):
        return "order.void"
    return "order.refund" if status is OrderStatus.PAID else None


# -- which lane took a card payment for which order ----------------------------------------------


class CardOrders:
    """order id → the lanes that took a card payment for it, from their `card.paid` events.
    SQLite, so a restart of the receiver forgets nothing."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS card_orders (order_id TEXT, store TEXT, lane TEXT, "
            "seen TEXT, PRIMARY KEY (order_id, store, lane))"
        )
        self._lock = threading.Lock()

    def record(self, order_id: str, store: str, lane: str, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO card_orders VALUES (?, ?, ?, ?)",
                (order_id, store, lane, now.isoformat()),
            )
            cutoff = (now - timedelta(days=INDEX_DAYS)).isoformat()
            self._db.execute("DELETE FROM card_orders WHERE seen < ?", (cutoff,))

    def lanes(self, order_id: str) -> list[tuple[str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT store, lane FROM card_orders WHERE order_id = ? ORDER BY store, lane",
                (order_id,),
            ).fetchall()
        return [(str(store), str(lane)) for store, lane in rows]

    def close(self) -> None:
        self._db.close()


def card_paid(topic: str, payload: bytes, prefix: str) -> tuple[str, str, str] | None:
    """(order id, store, lane) of a lane's `card.paid` event; None for any other message."""
    levels = topic.removeprefix(f"{prefix}/").split("/")
    if len(levels) != 3 or levels[2] != "event":
        return None
    try:
        event = Event.model_validate_json(payload)
    except ValidationError:
        return None
    order_id = event.data.get("order_id") if event.type == "card.paid" else None
    return (order_id, levels[0], levels[1]) if isinstance(order_id, str) and order_id else None


# -- asking a lane -----------------------------------------------------------------------------


class Lanes(Protocol):
    """Sends one op to one lane and returns its answer (raises TimeoutError without one)."""

    async def ask(
        self, store: str, lane: str, op: str, params: Mapping[str, Any], request_id: str
    ) -> Response: ...


class Receiver:
    """Turns an authentic notification into the lane ops it calls for."""

    def __init__(self, index: CardOrders, lanes: Lanes, username: str, password: Secret) -> None:
        self.index = index
        self.lanes = lanes
        self._username = username
        self._password = password

    async def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        """(HTTP status, text) for one delivery. 401 moves nothing; 503 asks K-Series to send it
        again (a lane did not answer); 200 for everything else, also what is ignored."""
        if not basic_auth_ok(headers.get("authorization"), self._username, self._password):
            log.warning("notification refused: wrong or missing credentials")
            return 401, "unauthorized"
        try:
            notice = read_notice(body)
        except UnreadableNotice as exc:
            return 400, str(exc)
        key = headers.get(IDEMPOTENCY_HEADER.lower(), "-")
        if notice is None:
            return 200, "ignored"
        lanes = self.index.lanes(notice.account)
        if not lanes:
            log.info("%s receipt %s (%s): no card payment on it", notice.kind, notice.account, key)
            return 200, "no card payment on this receipt"
        results = []
        for store, lane in lanes:
            try:
                results.append(await self._settle(store, lane, notice))
            except TimeoutError:
                log.warning(
                    "%s receipt %s: lane %s/%s did not answer",
                    notice.kind,
                    notice.account,
                    store,
                    lane,
                )
                return 503, f"lane {store}/{lane} did not answer; send again"
        log.info("%s receipt %s (%s): %s", notice.kind, notice.account, key, "; ".join(results))
        return 200, "; ".join(results)

    async def _settle(self, store: str, lane: str, notice: ReceiptNotice) -> str:
        where = f"{store}/{lane}"
        for _ in range(3):  # the POS may close the order between our look and our op
            seen = await self.lanes.ask(
                store, lane, "order.get", {"order_id": notice.account}, uuid.uuid4().hex
            )
            if seen.data is None:
                return f"{where}: order unknown ({seen.error.code if seen.error else '-'})"
            status = OrderStatus(seen.data["order"]["status"])
            op = plan(notice.kind, status)
            if op is None:
                if notice.kind is ReceiptKind.FINALIZED and status is not OrderStatus.PAID:
                    log.error(
                        "K-Series finalized receipt %s, but lane %s gave its card payments "
                        "back (order %s): settle the sale by hand",
                        notice.account,
                        where,
                        status,
                    )
                return f"{where}: order already {status}"
            request_id = f"kseries-rtn:{notice.kind}:{notice.account}:{op}"
            answer = await self.lanes.ask(store, lane, op, {"order_id": notice.account}, request_id)
            if answer.status == "ok":
                return f"{where}: {op} ok"
            log.warning("%s: %s refused: %s", where, op, answer.error)
        return f"{where}: order kept changing; not settled"


# -- the MQTT side -------------------------------------------------------------------------------


class MqttLanes:
    """One connection to the (central) broker: reads every lane's events into the index and
    sends ops to lanes, matching answers on `response/{op}` by `request_id` (v5 properties do
    not cross the fleet bridge). A persistent MQTT 3.1.1 session keeps events that arrive while
    the receiver is down."""

    def __init__(self, settings: MqttSettings, index: CardOrders, answer_timeout: float) -> None:
        self.settings = settings
        self.index = index
        self.answer_timeout = answer_timeout
        self._password = read_secret(settings.password_file, "mqtt_password")
        self._tls = tls_context(settings)
        self._client: aiomqtt.Client | None = None
        self._waiting: dict[str, asyncio.Future[Response]] = {}
        self.connected = asyncio.Event()

    async def run(self) -> None:
        s = self.settings
        attempt = 0
        while True:
            client = aiomqtt.Client(
                s.host,
                s.port,
                identifier=s.client_id or "svc-kseries-notify",
                username=s.username,
                password=self._password.reveal() if self._password else None,
                protocol=aiomqtt.ProtocolVersion.V311,
                clean_session=False,
                keepalive=s.keepalive,
                tls_context=self._tls,
            )
            try:
                async with client:
                    attempt = 0
                    await client.subscribe(f"{s.prefix}/+/+/event", qos=1)
                    await client.subscribe(f"{s.prefix}/+/+/response/+", qos=1)
                    self._client = client
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        if isinstance(payload, bytes | bytearray):
                            self._received(str(message.topic), bytes(payload))
            except aiomqtt.MqttError as exc:
                log.warning("broker %s:%s: %s", s.host, s.port, exc)
            finally:
                self._client = None
                self.connected.clear()
            attempt += 1
            await asyncio.sleep(backoff(attempt, s.reconnect_min, s.reconnect_max))

    def _received(self, topic: str, payload: bytes) -> None:
        paid = card_paid(topic, payload, self.settings.prefix)
        if paid is not None:
            self.index.record(*paid)
            return
        if "/response/" not in topic:
            return
        try:
            answer = Response.model_validate_json(payload)
        except ValidationError:
            return
        waiting = self._waiting.get(answer.request_id or "")
        if waiting is not None and not waiting.done():
            waiting.set_result(answer)

    async def ask(
        self, store: str, lane: str, op: str, params: Mapping[str, Any], request_id: str
    ) -> Response:
        async with asyncio.timeout(self.answer_timeout):
            await self.connected.wait()
            assert self._client is not None
            future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = future
            try:
                topic = f"{self.settings.prefix}/{store}/{lane}/request/{op}"
                body = json.dumps({"request_id": request_id, **params})
                await self._client.publish(topic, body, qos=1)
                return await future
            finally:
                self._waiting.pop(request_id, None)


# -- settings and the HTTP side ------------------------------------------------------------------


class NotifySettings(BaseModel):
    """`kseries-notify.toml`: where K-Series posts, its credentials, and the central broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = Field("127.0.0.1", description="address to listen on, behind a TLS proxy")
    port: Port = 8480
    path: str = Field("/kseries/notifications", pattern=r"^/[\x21-\x7e]*$")
    username: str = Field(min_length=1, description="the webhook's Basic auth user name")
    password_file: Path | None = Field(
        None, description="its password; default: the systemd credential kseries_notify_password"
    )
    answer_timeout: float = Field(20.0, gt=0, le=300, description="seconds to wait for a lane")
    state_dir: Path = DEFAULT_STATE_DIR / "kseries-notify"
    mqtt: MqttSettings = Field(default_factory=MqttSettings)


def load_settings(path: Path) -> NotifySettings:
    """Read and validate the file; raise ValueError with every problem, one per line."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return NotifySettings.model_validate(data)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ValueError("\n".join(problems)) from None


def password_of(settings: NotifySettings) -> Secret:
    try:
        secret = read_secret(settings.password_file, "kseries_notify_password")
    except LaneError as exc:
        raise ValueError(exc.message) from None
    if secret is None or not secret.reveal():
        raise ValueError(
            "password_file: required (or the systemd credential kseries_notify_password)"
        )
    return secret


Handle = Callable[[Mapping[str, str], bytes], Coroutine[Any, Any, tuple[int, str]]]


@contextlib.contextmanager
def serve_http(
    settings: NotifySettings, handle: Handle, loop: asyncio.AbstractEventLoop
) -> Iterator[int]:
    """The webhook endpoint on a thread; each request is handled on `loop`. Yields the port."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

        def do_POST(self) -> None:
            if self.path.split("?")[0] != settings.path:
                self._send(404, "not found")
                return
            length = int(self.headers.get("content-length") or 0)
            if not 0 < length <= MAX_BODY:
                self._send(413 if length else 411, "a body of 1 byte to 1 MB is required")
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            work = asyncio.run_coroutine_threadsafe(handle(headers, body), loop)
            try:
                status, text = work.result(timeout=settings.answer_timeout * 4)
            except Exception:
                log.exception("notification handling failed")
                status, text = 500, "internal error"
            self._send(status, text)

        def _send(self, status: int, text: str) -> None:
            data = json.dumps({"result": text}).encode()
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="lane-agent"')
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((settings.listen, settings.port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="kseries-notify", daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def run(settings: NotifySettings, stop: asyncio.Event) -> int:
    """Serve until `stop`: the broker connection, then the webhook endpoint."""
    password = password_of(settings)
    index = CardOrders(settings.state_dir / "card-orders.sqlite")
    lanes = MqttLanes(settings.mqtt, index, settings.answer_timeout)
    receiver = Receiver(index, lanes, settings.username, password)
    broker = asyncio.create_task(lanes.run())
    try:
        # Open to K-Series only once events are being read: a notification is never taken
        # while the lanes cannot be asked.
        await lanes.connected.wait()
        with serve_http(settings, receiver.receive, asyncio.get_running_loop()) as port:
            log.info("K-Series notifications on %s:%d%s", settings.listen, port, settings.path)
            await stop.wait()
    finally:
        broker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await broker
        index.close()
    return 0

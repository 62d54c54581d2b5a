"""The MQTT side of the agent: one connection, kept alive, with retained state and request intake.

The reconnect loop follows aiomqtt's recommended pattern (one `async with` per connection) and adds
what a lane needs: a last will, the retained `state` and device records republished on every
connect, resubscription, backoff with full jitter, and one ordered publisher so a message queued
while the broker was away goes out once it is back.

No single message may cost the connection (issue 14): a message that cannot be published (its
topic, its size) is dropped and counted, never retried on every reconnect; a retained request or
one whose Response Topic is outside `{base}/reply/` is passed on refused, to be answered and
never run; and the broker is told the largest packet the agent takes (MQTT v5).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel

from agent.config import MqttSettings
from agent.contract import AgentState, utc_now
from agent.errors import ErrorCode, LaneError
from agent.secrets import Secret, credential_path

log = logging.getLogger(__name__)

RequestHandler = Callable[["Incoming"], Awaitable[None]]
WatchHandler = Callable[[str, bytes], None]

MAX_TOPIC_BYTES = 65535  # MQTT's UTF-8 string length field is two bytes
# Room for a request's topic, properties and headers above `mqtt.max_payload`: the MQTT v5
# Maximum Packet Size the agent announces, so the broker never sends it a 200 MB request.
PACKET_OVERHEAD = 65536 + 4096


def seldom(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... of a kind of drop: a flood costs a few lines, not one each,
    and the count in the last line says how many."""
    return count & (count - 1) == 0


def largest_payload(max_payload: int) -> int:
    """The largest payload the agent publishes: twice the largest request, as an answer may
    repeat one (an order's lines). The broker's `message_size_limit` must be at least this
    (docs/security.md): a message it drops gets no PUBACK, and waiting for one would cost the
    connection and then, sent again, every reconnect."""
    return 2 * max_payload


# Nagle's algorithm off: a request's PUBACK, its events and its answer are small writes in a
# row, and with Nagle each waited for the broker's delayed ACK (40 ms on Linux): about 80 ms
# added to every request's answer, for a POS that waits on it at the till.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
# Messages handed to the client before the oldest one's PUBACK: within aiomqtt's threshold for
# warning about pending calls (10) and paho's in-flight limit (20).
IN_FLIGHT = 8
# Seconds for the broker to answer a connect, a subscribe or the oldest message in flight.
TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ReplyTo:
    """MQTT v5 Response Topic and Correlation Data of a request."""

    topic: str
    correlation: bytes | None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as it came off the broker. `refusal` says why it must not run (retained, or a
    Response Topic the agent will not publish to); it is still answered, with that reason."""

    op: str
    payload: bytes
    reply_to: ReplyTo | None = None
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation: bytes | None = None


def backoff(attempt: int, low: float, high: float) -> float:
    """Full jitter: spread reconnecting lanes after a broker restart instead of a stampede."""
    return random.uniform(low, min(high, low * 2**attempt))


def publishable(topic: str) -> bool:
    """A topic one can publish to: valid UTF-8 of 1 to 65535 bytes, no wildcards, no NUL or other
    control characters. paho raises ValueError on some of these and the broker drops the client
    for others; checked before anything is queued, one bad topic costs one message, never the
    connection."""
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return (
        0 < size <= MAX_TOPIC_BYTES
        and not {"+", "#"} & set(topic)
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in topic)
    )


def reply_problem(topic: str, base: str) -> str | None:
    """Why the agent will not answer on a request's Response Topic, or None. Only the lane's own
    `reply/` subtree: anywhere else under its base topic (`state`, `event`, `response/...`) a
    screen would speak as the agent, which the ACL lets the agent, not the screen, do."""
    if not topic.startswith(f"{base}/reply/"):
        return f"the Response Topic must be under {base}/reply/"
    if not publishable(topic):
        return "the Response Topic is not one a message can be published to (a wildcard?)"
    return None


def _encrypted_key() -> str:
    raise ValueError("the key is encrypted; give the agent an unencrypted key readable only by it")


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context for `[mqtt.tls]`, or None without it.

    The client certificate's key is `key_file`, else the systemd credential `mqtt_tls_key`, else
    the certificate file itself. A file that cannot be used raises LaneError naming the key: the
    daemon then refuses to start (exit 2) instead of crashing on every reconnect.
    """
    tls = settings.tls
    if tls is None:
        return None
    key_file = tls.key_file
    if tls.cert_file is not None and key_file is None:
        key_file = credential_path("mqtt_tls_key")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise LaneError(
            ErrorCode.NOT_CONFIGURED, f"mqtt.tls.ca_file: cannot use {tls.ca_file}: {exc}"
        ) from None
    if tls.cert_file is not None:
        what = (
            f"{tls.cert_file} with key {key_file}"
            if key_file
            else f"{tls.cert_file} (no key_file, no credential mqtt_tls_key: the key must be in it)"
        )
        try:
            context.load_cert_chain(tls.cert_file, key_file, password=_encrypted_key)
        except (OSError, ValueError) as exc:
            raise LaneError(
                ErrorCode.NOT_CONFIGURED, f"mqtt.tls.cert_file: cannot use {what}: {exc}"
            ) from None
    if tls.insecure:
        context.check_hostname = False
    return context


def ignore_closed_socket_race(loop: asyncio.AbstractEventLoop) -> None:
    """aiomqtt asks the loop to watch paho's socket from paho's thread; when the broker closes
    the connection first (it refused the TLS handshake), the loop finds the descriptor gone and
    would print a traceback for a harmless race the reconnect loop already handles. Any other
    error still reaches the default handler."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc, handle = context.get("exception"), context.get("handle")
        watch = getattr(handle, "_callback", None)
        if (
            isinstance(exc, OSError)
            and exc.errno == errno.EBADF
            and watch in (loop.add_reader, loop.add_writer)
        ):
            log.debug("MQTT socket closed before the loop could watch it; reconnecting")
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


class Bus:
    def __init__(
        self,
        settings: MqttSettings,
        base_topic: str,
        version: str,
        *,
        client_id: str,
        password: Secret | None = None,
        on_status: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.settings = settings
        self.base = base_topic
        self._version = version
        self._client_id = client_id
        self._password = password
        self._on_status = on_status
        self._tls = tls_context(settings)  # once, at start: a bad file stops the agent here
        self._retained: dict[str, bytes] = {}
        self._queue: deque[Outgoing] = deque()
        self._wakeup = asyncio.Event()
        self._stop_reason = "stopped"
        self._since = utc_now()
        self._handler: RequestHandler | None = None
        self._watches: list[tuple[str, WatchHandler]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()
        self.last_progress = time.monotonic()
        self.dropped = 0
        self.unsendable = 0
        self.last_error: str | None = None

    def topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix}"

    # --- what the rest of the agent calls ---------------------------------------------------------

    def publish(
        self, suffix: str, message: BaseModel, *, qos: int = 1, urgent: bool = False
    ) -> None:
        """Queue a stream message (scan, event, response); order is kept across reconnects.
        `urgent` goes ahead of everything queued (a health ping's answer during a flood)."""
        payload = message.model_dump_json().encode()
        self._enqueue(Outgoing(self.topic(suffix), payload, qos, False), urgent=urgent)

    def reply(self, reply_to: ReplyTo, message: BaseModel, *, urgent: bool = False) -> None:
        payload = message.model_dump_json().encode()
        outgoing = Outgoing(reply_to.topic, payload, 1, False, reply_to.correlation)
        self._enqueue(outgoing, urgent=urgent)

    def set_retained(self, suffix: str, message: BaseModel) -> None:
        """Publish retained state now and again after every reconnect."""
        self.retain(self.topic(suffix), message.model_dump_json().encode())

    def retain(self, topic: str, payload: bytes) -> None:
        """Publish a retained message on any topic now and again after every reconnect; an empty
        payload clears the topic."""
        message = Outgoing(topic, payload, 1, True)
        if self._retained.get(topic) == payload or not self._sendable(message):
            return
        self._retained[topic] = payload
        self._enqueue(message)

    def watch(self, topic_filter: str, handler: WatchHandler) -> None:
        """Subscribe to `topic_filter` on every connect and pass its messages to `handler`
        (topic, payload); request topics are not watched."""
        self._watches.append((topic_filter, handler))

    def healthy(self, stall: float = 120.0) -> bool:
        """The loop is making progress: connected, or still trying to connect."""
        return self.connected.is_set() or time.monotonic() - self.last_progress < stall

    def queued(self) -> int:
        return len(self._queue)

    def counters(self) -> str:
        """What the bus has had to drop, for the broker line of device.health."""
        return f"{self.dropped} dropped (queue full), {self.unsendable} unsendable"

    def outgoing(self) -> tuple[Outgoing, ...]:
        """What waits for the broker, oldest first (all of it, before the agent runs)."""
        return tuple(self._queue)

    # --- the connection loop ----------------------------------------------------------------------

    async def run(self, on_request: RequestHandler) -> None:
        """Stay connected until cancelled; on cancel, say goodbye with a retained offline state."""
        self._handler = on_request
        attempt = 0
        while True:
            self.last_progress = time.monotonic()
            try:
                async with self._make_client() as client:
                    attempt = 0
                    try:
                        await self._session(client)
                    except asyncio.CancelledError:
                        await self._goodbye(client)
                        raise
            except aiomqtt.MqttError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Leaving the client (disconnect) failed while we were being cancelled:
                    # the error must not turn the stop into a reconnect.
                    raise asyncio.CancelledError from exc
                self.last_error = str(exc) or type(exc).__name__
                delay = backoff(attempt, self.settings.reconnect_min, self.settings.reconnect_max)
                attempt += 1
                where = f"{self.settings.host}:{self.settings.port}"
                self._on_status(
                    f"MQTT {where} unreachable ({self.last_error}); retry in {delay:.1f}s"
                )
                log.warning("MQTT %s: %s; reconnecting in %.1fs", where, self.last_error, delay)
                await asyncio.sleep(delay)
            finally:
                self.connected.clear()

    def stopping(self, reason: str) -> None:
        """Say why before cancelling `run`; the retained offline state carries the reason."""
        self._stop_reason = reason

    async def _session(self, client: aiomqtt.Client) -> None:
        # Subscribe first: a screen that sees "online" may send a request at once. With v5, a
        # retained request keeps its retain flag however it arrives (so it is never run), and
        # the agent does not get back its own publishes (the empty message clearing one).
        options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True)
        if self.settings.protocol == "5":
            await client.subscribe(self.topic("request/+"), options=options)
        else:
            await client.subscribe(self.topic("request/+"), qos=1)
        for topic_filter, _ in self._watches:
            await client.subscribe(topic_filter, qos=1)
        online = AgentState(state="online", version=self._version, since=self._since)
        await client.publish(self.topic("state"), online.model_dump_json(), qos=1, retain=True)
        # The snapshot below supersedes queued retained copies; updates made while it goes out
        # are queued after it, so the broker always ends up with the newest record.
        self._queue = deque(m for m in self._queue if not m.retain)
        for topic, payload in list(self._retained.items()):
            await client.publish(topic, payload, qos=1, retain=True)
        self.connected.set()
        self.last_error = None
        where = f"{self.settings.host}:{self.settings.port}"
        log.info("MQTT connected to %s as %s", where, self._client_id)
        self._on_status(f"connected to MQTT {where}")
        loops = {
            asyncio.create_task(self._publish_loop(client)),
            asyncio.create_task(self._receive_loop(client)),
        }
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        error = next((t.exception() for t in done if t.exception() is not None), None)
        if error is not None and not isinstance(error, aiomqtt.MqttError):
            log.error("MQTT session failed unexpectedly", exc_info=error)
        raise aiomqtt.MqttError(f"connection lost: {error}")

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """Bounded best effort: flush what is queued, then publish the retained offline state."""
        offline = AgentState(
            state="offline", version=self._version, since=utc_now(), reason=self._stop_reason
        )
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(3):
                while self._queue:
                    await self._send_next(client)
                await client.publish(
                    self.topic("state"), offline.model_dump_json(), qos=1, retain=True
                )

    # --- internals --------------------------------------------------------------------------------

    def _sendable(self, message: Outgoing) -> bool:
        if not publishable(message.topic):
            self._unsendable(message.topic, "not a topic one can publish to")
            return False
        if len(message.payload) > largest_payload(self.settings.max_payload):
            self._unsendable(message.topic, f"a payload of {len(message.payload)} bytes")
            return False
        return True

    def _unsendable(self, topic: str, why: str) -> None:
        self.unsendable += 1
        if seldom(self.unsendable):
            log.warning(
                "MQTT message to %.80r (a topic of %d bytes) dropped: %s (%d so far)",
                topic,
                len(topic.encode("utf-8", "replace")),
                why,
                self.unsendable,
            )

    def _enqueue(self, message: Outgoing, *, urgent: bool = False) -> None:
        if not self._sendable(message):
            return
        if len(self._queue) >= self.settings.outgoing_queue:
            self._queue.popleft()
            self.dropped += 1
            if seldom(self.dropped):
                log.warning(
                    "MQTT outgoing queue full; dropped the oldest message (%d so far)",
                    self.dropped,
                )
        if urgent:
            self._queue.appendleft(message)
        else:
            self._queue.append(message)
        self._wakeup.set()

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        """Send up to IN_FLIGHT messages ahead of the oldest one's PUBACK, in queue order (one
        connection, one QoS: the broker keeps it), so a burst costs one round trip, not one each;
        every PUBACK and every new message wakes the loop. A message leaves the queue while in
        flight, so neither an urgent message nor a full queue's drop can take its place; when
        the session ends, those not acknowledged go back to the head of the queue, in order, to
        be sent again. The oldest unacknowledged for TIMEOUT seconds ends the session, as a
        publish timing out did when they went one by one."""
        loop = asyncio.get_running_loop()
        in_flight: deque[tuple[Outgoing, asyncio.Task[None], float]] = deque()
        try:
            while True:
                self._wakeup.clear()
                while in_flight and in_flight[0][1].done():
                    failed = in_flight[0][1].exception()
                    if failed is not None:  # ends the session; the message goes back below
                        raise failed
                    in_flight.popleft()
                    self.last_progress = time.monotonic()
                while self._queue and len(in_flight) < IN_FLIGHT:
                    message = self._queue.popleft()
                    sending = loop.create_task(self._send(client, message))
                    sending.add_done_callback(lambda _: self._wakeup.set())
                    in_flight.append((message, sending, loop.time()))
                try:
                    async with asyncio.timeout_at(in_flight[0][2] + TIMEOUT if in_flight else None):
                        await self._wakeup.wait()
                except TimeoutError:
                    raise aiomqtt.MqttError(f"no PUBACK from the broker in {TIMEOUT} s") from None
        finally:
            for message, sending, _ in reversed(in_flight):
                if sending.done() and not sending.cancelled() and sending.exception() is None:
                    continue  # acknowledged
                sending.cancel()
                self._queue.appendleft(message)

    async def _send_next(self, client: aiomqtt.Client) -> None:
        """Send the queue's head. It leaves the queue while in flight, so neither an urgent
        message nor a full queue's drop can take its place; a disconnect puts it back first."""
        message = self._queue.popleft()
        try:
            await self._send(client, message)
        except BaseException:
            self._queue.appendleft(message)
            raise

    async def _send(self, client: aiomqtt.Client, message: Outgoing) -> None:
        """Publish one message, until the broker acknowledges it, with no timer of its own (one
        per message was a good part of its cost: the publish loop bounds the wait by the oldest
        in flight, the goodbye by its 3 s). One paho refuses (ValueError: a payload over MQTT's
        limit) is dropped and counted: put back at the head of the queue it would be tried on
        every reconnect, and nothing after it would ever go out."""
        properties = None
        if message.correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = message.correlation
        try:
            await client.publish(
                message.topic,
                message.payload,
                qos=message.qos,
                retain=message.retain,
                properties=properties,
                timeout=math.inf,
            )
        except ValueError as exc:
            self._unsendable(message.topic, str(exc))

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        prefix = self.topic("request/")
        async for message in client.messages:
            self.last_progress = time.monotonic()
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if not str(message.topic).startswith(prefix):
                self._watched(str(message.topic), payload)
                continue
            incoming = self._incoming(message, payload)
            if incoming is None:
                continue
            task = asyncio.create_task(self._dispatch(incoming))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _incoming(self, message: aiomqtt.Message, payload: bytes) -> Incoming | None:
        """The request a message carries, refused when it must not run; None for an empty
        retained message (a retained request being cleared: nothing to answer)."""
        topic = str(message.topic)
        op = topic.removeprefix(self.topic("request/"))
        if message.retain:
            if not payload:
                return None
            # Run on every reconnect, and a keyed code would sit on the broker in clear: clear
            # it (the ACL lets the agent write its request topics) and refuse it.
            log.warning("request %.80r was retained: not run, and cleared on the broker", op)
            self._enqueue(Outgoing(topic, b"", 1, True))
            return Incoming(
                op,
                payload,
                refusal="a retained request is never run: publish requests without the retain flag",
            )
        props = message.properties
        response_topic = getattr(props, "ResponseTopic", None) if props else None
        if not response_topic:
            return Incoming(op, payload)
        problem = reply_problem(response_topic, self.base)
        if problem is not None:
            log.warning(
                "request %.80r refused: Response Topic %.80r: %s", op, response_topic, problem
            )
            return Incoming(op, payload, refusal=f"{problem}; nothing was done")
        return Incoming(
            op, payload, ReplyTo(response_topic, getattr(props, "CorrelationData", None))
        )

    def _watched(self, topic: str, payload: bytes) -> None:
        for topic_filter, handler in self._watches:
            if aiomqtt.Topic(topic).matches(topic_filter):
                try:
                    handler(topic, payload)
                except Exception:  # a bug there must not cost the connection
                    log.exception("handler for %s failed on %s", topic_filter, topic)

    async def _dispatch(self, incoming: Incoming) -> None:
        assert self._handler is not None
        try:
            await self._handler(incoming)
        except Exception:
            log.exception("request handler for %.80r failed", incoming.op)

    def _make_client(self) -> aiomqtt.Client:
        s = self.settings
        offline = AgentState(state="offline", version=self._version).model_dump_json()
        v5 = s.protocol == "5"
        connect = None
        if v5:
            # The broker (v5) then drops a larger message for the agent by its length header,
            # before a byte of it reaches the agent's memory.
            connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect.MaximumPacketSize = s.max_payload + PACKET_OVERHEAD
        return aiomqtt.Client(
            s.host,
            s.port,
            identifier=self._client_id,
            username=s.username,
            password=self._password.reveal() if self._password else None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self.topic("state"), offline, qos=1, retain=True),
            keepalive=s.keepalive,
            timeout=TIMEOUT,
            tls_context=self._tls,
            max_queued_incoming_messages=1000,
            socket_options=NO_DELAY,
            properties=connect,
        )

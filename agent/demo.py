"""`lane-agent demo`: the whole lane on one machine, for a POS developer's first ten minutes.

It starts a broker on a free loopback port (mosquitto when installed, else amqtt's embedded
pure-Python broker, MQTT 3.1.1 only) with a websocket listener for the lane display page, the
agent on the sandbox ledger with its demo gifts, the page itself on a loopback web server, and a
live view of the lane's MQTT traffic. Lines typed at the prompt go to the agent over MQTT exactly
as a POS screen would send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt

from agent.app import LaneAgent, install_signal_handlers
from agent.config import Config, parse_config
from agent.display import page_problem, page_url, serve_page
from agent.logs import setup_logging

BANNER = """\
lane-agent demo: lane {base} on {broker}
  sandbox gifts:  100000000001  $50.00      100000000003  3 x Coffee
                  100000000002  $25.00      100000000004  expired
                  100000000007  only valid at store s2
  try:
    100000000001            scan (keyed entry) -> a gift.validated event with the balance
    redeem 1250             redeem $12.50 from the last scanned gift
    redeem-qty 1            redeem one item from the last scanned item gift
    reverse                 reverse the last redemption
    validate                validate the last scanned gift again (fresh balance)
    health                  device, broker and provider health
    help / quit
  watch it from another terminal:  mosquitto_sub -h 127.0.0.1 -p {port} -t '{base}/#' -v
  lane display page (open it in a browser):
    {page}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def broker(workdir: Path, port: int, ws_port: int, kind: str) -> AsyncIterator[str]:
    """Start the broker `kind` (mosquitto, embedded, or auto), MQTT on `port` and MQTT over
    websockets (for the display page) on `ws_port`; yield its MQTT version."""
    binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
    if kind == "mosquitto" and binary is None:
        sys.exit("mosquitto is not installed: sudo apt-get install mosquitto, or --broker embedded")
    if binary is not None and kind != "embedded":
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"allow_anonymous true\nlistener {port} 127.0.0.1\n"
            f"listener {ws_port} 127.0.0.1\nprotocol websockets\n"
        )
        with (workdir / "mosquitto.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                binary, "-c", str(conf), stdout=log, stderr=log
            )
        try:
            await _wait_for_port(port)
            await _wait_for_port(ws_port)
            print(
                f"broker: mosquitto on 127.0.0.1:{port}, websockets on {ws_port}"
                f" (log in {workdir / 'mosquitto.log'})"
            )
            yield "5"
        finally:
            proc.terminate()
            await proc.wait()
        return
    try:
        from amqtt.broker import Broker
    except ImportError:
        sys.exit(
            "no MQTT broker: install mosquitto (sudo apt-get install mosquitto) or the embedded "
            "one (pip install 'lane-agent[demo]')"
        )
    embedded = Broker(
        {
            "listeners": {
                "default": {"type": "tcp", "bind": f"127.0.0.1:{port}"},
                "ws": {"type": "ws", "bind": f"127.0.0.1:{ws_port}"},
            },
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await embedded.start()
    print(
        f"broker: embedded amqtt on 127.0.0.1:{port}, websockets on {ws_port}"
        " (MQTT 3.1.1; install mosquitto for v5)"
    )
    try:
        yield "3.1.1"
    finally:
        await embedded.shutdown()


async def _wait_for_port(port: int) -> None:
    async with asyncio.timeout(10):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def describe(topic: str, payload: dict[str, Any], base: str) -> str:
    """One readable line per MQTT message for the live view."""
    suffix = topic.removeprefix(base + "/")
    if suffix == "state":
        return f"[state]    agent {payload.get('state')}"
    if suffix.startswith("devices/"):
        c = payload.get("counters", {})
        return (
            f"[device]   {payload.get('device_id')} {payload.get('state')}"
            f" scans={c.get('scans')} rejects={c.get('rejects')}"
        )
    if suffix == "scan":
        status = "valid" if payload.get("valid") else f"INVALID: {payload.get('error')}"
        return (
            f"[scan]     {payload.get('kind')} {payload.get('display')} ({status})"
            f" token_id={payload.get('token_id')}"
        )
    if suffix == "event":
        return f"[event]    {payload.get('type')}: {_event_summary(payload)}"
    if suffix.startswith("request/"):
        op = suffix.removeprefix("request/")
        shown = {k: v for k, v in payload.items() if k != "data"}
        return f"[request]  {op} {json.dumps(shown)}"
    if suffix.startswith("response/"):
        op = suffix.removeprefix("response/")
        if payload.get("status") == "ok":
            return f"[response] {op} ok"
        error = payload.get("error") or {}
        return f"[response] {op} ERROR {error.get('code')}: {error.get('message')}"
    return f"[{suffix}] {json.dumps(payload)}"


def _event_summary(event: dict[str, Any]) -> str:
    data = event.get("data", {})
    gift = (
        data.get("gift")
        or data.get("redemption", {}).get("gift")
        or data.get("reversal", {}).get("gift")
    )
    if event.get("type") == "gift.invalid":
        return f"{data.get('display')} {data['error']['code']}: {data['error']['message']}"
    if gift is None:
        return json.dumps(data)
    txn = (data.get("redemption") or data.get("reversal") or {}).get("transaction_id")
    state = "redeemable" if gift.get("is_redeemable") else f"NOT redeemable ({gift.get('reason')})"
    parts = [data.get("display") or "", gift.get("description", ""), state]
    if txn:
        parts.append(f"transaction {txn}")
    return " | ".join(p for p in parts if p)


class Console:
    """Turns typed lines into POS requests and remembers the last token and transaction."""

    def __init__(self, client: aiomqtt.Client, base: str) -> None:
        self.client = client
        self.base = base
        self.last_token: str | None = None
        self.last_transaction: str | None = None

    async def send(self, op: str, **params: Any) -> None:
        body = {"request_id": f"demo-{uuid.uuid4().hex[:8]}", **params}
        await self.client.publish(f"{self.base}/request/{op}", json.dumps(body), qos=1)

    def observe(self, topic: str, payload: dict[str, Any]) -> None:
        """Remember what the live view just showed, so `redeem` and `reverse` need no ids."""
        if topic == f"{self.base}/scan" and payload.get("token_id"):
            self.last_token = payload["token_id"]
        if topic == f"{self.base}/event" and payload.get("type") == "gift.redeemed":
            self.last_transaction = payload["data"]["redemption"]["transaction_id"]

    async def command(self, line: str) -> bool:
        words = line.split()
        if not words:
            return True
        verb, args = words[0].lower(), words[1:]
        if verb in {"quit", "exit"}:
            return False
        if verb == "help":
            print(BANNER.split("  try:\n", 1)[1])
        elif verb in {"redeem", "redeem-qty"} and len(args) == 1 and args[0].isdigit():
            field = "amount" if verb == "redeem" else "quantity"
            await self._with_token("gift.redeem", **{field: int(args[0])})
        elif verb == "reverse":
            txn = args[0] if args else self.last_transaction
            if txn is None:
                print("nothing to reverse yet: redeem first")
            else:
                await self.send("gift.reverse", transaction_id=txn)
        elif verb == "validate":
            await self._with_token("gift.validate")
        elif verb == "health":
            await self.send("device.health")
        else:
            await self.send("scan.inject", data=line.strip())
        return True

    async def _with_token(self, op: str, **params: Any) -> None:
        if self.last_token is None:
            print("scan a gift code first (e.g. 100000000001)")
            return
        await self.send(op, token_id=self.last_token, **params)


async def _read_commands(console: Console) -> None:
    """Until end of input or `quit`; reads without a thread so Ctrl-C stops at once."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if not await console.command(line.decode("utf-8", "replace").rstrip("\r\n")):
            return


async def _live_view(client: aiomqtt.Client, console: Console, base: str) -> None:
    async for message in client.messages:
        try:
            payload = json.loads(message.payload) if isinstance(message.payload, bytes) else {}
        except ValueError:
            payload = {}
        topic = str(message.topic)
        console.observe(topic, payload)
        print(describe(topic, payload, base), flush=True)


@contextlib.contextmanager
def display_page(web_port: int, ws_port: int, base: str) -> Iterator[str]:
    """Serve the lane display page on loopback; yield its address with the demo's broker and
    lane filled in, or why it cannot be served (the demo runs on without it)."""
    problem = page_problem()
    if problem is not None:
        yield f"not served: {problem}"
        return
    with serve_page(web_port) as page:
        yield page_url(page, ws=f"ws://127.0.0.1:{ws_port}/", base=base)


async def run_demo(
    workdir: Path,
    *,
    port: int = 0,
    ws_port: int = 0,
    web_port: int = 0,
    broker_kind: str = "auto",
) -> int:
    setup_logging("warning")
    port = port or free_port()
    ws_port = ws_port or free_port()
    async with broker(workdir, port, ws_port, broker_kind) as protocol:
        config: Config = parse_config(
            {
                "lane": {"store": "demo", "lane": "1"},
                "mqtt": {"host": "127.0.0.1", "port": port, "protocol": protocol},
                "providers": {"sandbox": {}},
                "state": {"dir": str(workdir / "state")},
            }
        )
        stop = asyncio.Event()
        install_signal_handlers(stop)
        agent = LaneAgent(config)
        agent_task = asyncio.create_task(agent.run(stop))
        base = config.base_topic
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier=f"demo-view-{uuid.uuid4().hex[:6]}"
        ) as client:
            await client.subscribe(f"{base}/#", qos=1)
            console = Console(client, base)
            view = asyncio.create_task(_live_view(client, console, base))
            commands = asyncio.create_task(_read_commands(console))
            with display_page(web_port, ws_port, base) as page:
                banner = BANNER.format(base=base, broker=f"127.0.0.1:{port}", port=port, page=page)
                print(banner, flush=True)
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait(
                    {commands, stopped, agent_task}, return_when=asyncio.FIRST_COMPLETED
                )
                stop.set()
                await agent_task
                for task in (view, commands, stopped):
                    task.cancel()
                await asyncio.gather(view, commands, stopped, return_exceptions=True)
    return 0

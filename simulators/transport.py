"""A provider simulator served to an httpx client in-process (the `httpx.MockTransport` pattern),
so adapter and flow tests need no socket, server thread, process or broker.

Only the socket is replaced: every request goes through the simulator's own `receive` and
`Exchange.answer`, the code its loopback HTTP server runs, so routing, auth, the request log, the
`/_sim/` control endpoints and faults behave as they do over HTTP:

- `error`: the status with the simulator's error body, nothing applied;
- `slow`: the answer comes `delay` seconds later, and the change is applied then even if the
  client gave up waiting, as a server thread goes on after its client left;
- `timeout`: no answer for `delay` seconds (60 when it names none), then the connection closes;
  the client's own timeout fires first;
- `drop_after_apply`: the change is applied and `httpx.RemoteProtocolError` is raised, what httpx
  raises when the server closes the connection without answering.

httpx's per-phase timeouts are socket timeouts and do not exist here; `ProviderClient` bounds
each call as a whole, and that bound applies. Requests are handled in the event loop's thread:
handlers are short, in-memory and run under the simulator's lock, so a thread hop per request
would buy nothing but nondeterministic ordering.

In a test:

    sim = CardSimulator()
    transport = SimulatorTransport(sim)
    settings = KSeriesSettings(base_url=BASE_URL, ...)
    cards = KSeriesCardProvider(settings, transport=transport)
    with httpx.Client(base_url=BASE_URL, transport=transport) as control:
        control.post("/_sim/faults", json=[{"path": "/v1/redemptions", "kind": "timeout"}])
        ...  # await cards.redeem(...); control.get("/_sim/ledger").json()
    await cards.aclose()  # closes the transport, which ends the delays still running

A sync `httpx.Client` works too (the control calls above); it waits out a `slow` or `timeout`
fault's delay in full, blocking its caller, so faults are for the async adapters.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from simulators.server import Exchange, Response, Simulator

# Any host will do: nothing is resolved or connected.
BASE_URL = "http://simulator.invalid"


class SimulatorTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """`httpx.AsyncClient(transport=SimulatorTransport(sim))`: `sim` answers without a socket."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        # Answers not given yet, each with the future `aclose` resolves to end its delay.
        self._answering: dict[asyncio.Task[Response | None], asyncio.Future[None]] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = self._receive(request, await request.aread())
        # The provider's side runs as its own task, shielded from the client's cancellation: a
        # client that gives up on a slow answer must not stop the provider applying it.
        closing = asyncio.get_running_loop().create_future()
        answering = asyncio.create_task(self._answer(exchange, closing))
        self._answering[answering] = closing
        answering.add_done_callback(self._answering.pop)
        return self._response(request, await asyncio.shield(answering))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        exchange = self._receive(request, request.read())
        time.sleep(exchange.delay)  # the simulated provider's slowness, as the server waits it
        return self._response(request, exchange.answer())

    async def aclose(self) -> None:
        """End the delays still running, as server shutdown does: a held `timeout` closes
        without an answer, a `slow` one answers now."""
        for closing in self._answering.values():
            closing.set_result(None)
        await asyncio.gather(*self._answering)

    @staticmethod
    async def _answer(exchange: Exchange, closing: asyncio.Future[None]) -> Response | None:
        if exchange.delay:  # the simulated provider's slowness, cut short by `aclose`
            await asyncio.wait([closing], timeout=exchange.delay)
        return exchange.answer()

    def _receive(self, request: httpx.Request, body: bytes) -> Exchange:
        target = request.url.raw_path.decode("ascii")  # the path and query as sent, not decoded
        return self.simulator.receive(request.method, target, request.headers.multi_items(), body)

    @staticmethod
    def _response(request: httpx.Request, response: Response | None) -> httpx.Response:
        if response is None:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        headers, payload = response.encode()
        return httpx.Response(response.status, headers=headers, content=payload, request=request)

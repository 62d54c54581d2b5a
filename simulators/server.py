"""The loopback HTTP server every provider simulator runs on: routing, ledger, request log and
fault injection, so a simulator module only states its API's rules.

Real HTTP (stdlib `ThreadingHTTPServer`, HTTP/1.1 keep-alive) on 127.0.0.1: the adapters under
test go through their real transport. `simulators.transport` serves the same simulator to an
httpx client without a socket; both go through `Simulator.receive` and `Exchange.answer`, so
routing, the request log, the control endpoints and faults are one implementation. Besides the
API, every simulator answers:

- `GET /_sim/ledger`: the simulator's state (what money moved, what is authorized...);
- `GET /_sim/requests`: every API request received, with its raw body, in order;
- `POST /_sim/faults`: `[{"path": "/api/...", "kind": "error", ...}]` arms faults (see `Fault`);
- `POST /_sim/seed`: simulator-specific fixtures (gifts, cards, users...); `POST /_sim/reset`.

Faults model what goes wrong with a real provider: an `error` status without applying anything,
a `slow` answer, a `timeout` (no answer at all, the connection held open), and
`drop_after_apply`: the change is applied and the connection is closed before any answer, the
case that must never lead a client to apply a payment twice.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Json = Any
# How long a `timeout` fault holds a request when it names no delay; server shutdown (or closing
# the in-process transport) ends it sooner.
HOLD_SECONDS = 60.0


class Fault(BaseModel):
    """One armed fault: hits the next `count` requests whose path matches `path` (a regex)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(".*", description="regular expression matched against the whole path")
    method: str | None = None
    kind: Literal["error", "slow", "timeout", "drop_after_apply"]
    status: int = Field(503, ge=400, le=599, description="for `error`")
    delay: float = Field(0.0, ge=0, le=HOLD_SECONDS, description="for `slow` and `timeout`")
    count: int = Field(1, ge=1)
    after: int = Field(0, ge=0, description="let this many matching requests through first")

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(
            re.fullmatch(self.path, path)
        )


_FAULTS = TypeAdapter(list[Fault])


@dataclass
class Request:
    """What a route handler sees; `params` holds the `{name}` segments of the route."""

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Json:
        """The body as JSON; a body that is not JSON is the client's error (400)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, {"error": f"body is not JSON: {exc}"}) from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: Json = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[list[tuple[str, str]], bytes]:
        """The headers and body as they go out, the same over a socket and in-process."""
        payload = b"" if self.body is None else json.dumps(self.body).encode()
        headers = list(self.headers.items())
        if payload:
            headers.append(("Content-Type", "application/json"))
        headers.append(("Content-Length", str(len(payload))))
        return headers, payload


class ApiError(Exception):
    """Raised by a handler to answer with the provider's own error status and body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: str
    status: int | None  # None: no answer was sent (timeout or dropped connection)


@dataclass
class Exchange:
    """One request as the simulator received it: logged, its fault (if any) taken.

    Whatever carries it (the HTTP handler, the in-process transport) waits `delay` seconds and
    then sends what `answer()` returns, or closes the connection without an answer on None."""

    simulator: Simulator
    request: Request
    fault: Fault | None
    logged: LoggedRequest | None  # None: a `/_sim/` control request, which is not logged

    @property
    def delay(self) -> float:
        """How long the provider takes before answering: a `slow` fault's delay, or how long a
        `timeout` fault holds the request before the connection is closed."""
        if self.fault is None:
            return 0.0
        if self.fault.kind == "timeout":
            return self.fault.delay or HOLD_SECONDS
        return self.fault.delay if self.fault.kind == "slow" else 0.0

    def answer(self) -> Response | None:
        """Apply the request (unless the fault says otherwise) and give the answer to send."""
        sim, fault = self.simulator, self.fault
        if self.logged is None:
            return sim.control(self.request)
        if fault is not None and fault.kind == "timeout":
            return None
        if fault is not None and fault.kind == "error":
            response = Response(fault.status, sim.error_body(fault.status, "injected fault"))
        else:
            response = sim.dispatch(self.request)
            if fault is not None and fault.kind == "drop_after_apply":
                return None
        self.logged.status = response.status
        return response


class Simulator:
    """Base of a provider simulator: subclasses add routes in `__init__` and keep their ledger.

    Handlers run one at a time under `lock`, like a provider's database transaction: a handler
    that returns has applied its change.
    """

    name = "simulator"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.routes: list[Route] = []
        self.requests: list[LoggedRequest] = []
        self.faults: list[Fault] = []

    # -- for subclasses -------------------------------------------------------------------------

    def route(self, method: str, template: str, handler: Handler) -> None:
        """`template` like `/api/cards/{number}/balance`; segments in braces become params."""
        pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template))
        self.routes.append(Route(method, re.compile(pattern), handler))

    def authenticate(self, request: Request) -> None:
        """Raise `ApiError` for a request the real provider would refuse (auth, headers)."""

    def error_body(self, status: int, message: str) -> Json:
        """The provider's error shape, used for injected `error` faults and unknown paths."""
        return {"error": message}

    def usage(self) -> list[str]:
        """Lines printed at start-up: the credentials it accepts, what the seed holds."""
        return []

    def ledger(self) -> Json:
        """The state tests and integrators check after a run."""
        return {}

    def seed(self, data: Json) -> None:
        raise ApiError(400, {"error": f"{self.name} takes no seed data"})

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()

    # -- dispatch -------------------------------------------------------------------------------

    def receive(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> Exchange:
        """Take one request (`target`: the path and query as sent): log it unless it is for a
        `/_sim/` control endpoint, and take the fault armed for it."""
        url = urlsplit(target)
        request = Request(
            method=method,
            path=url.path,
            params={},
            query=parse_qs(url.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers},
            body=body,
        )
        if url.path.startswith("/_sim/"):
            return Exchange(self, request, None, None)
        logged = LoggedRequest(
            method, url.path, request.query, request.headers, body.decode(errors="replace"), None
        )
        with self.lock:
            self.requests.append(logged)
        return Exchange(self, request, self.take_fault(method, url.path), logged)

    def arm(self, faults: list[Fault]) -> None:
        with self.lock:
            self.faults.extend(faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.after:
                        fault.after -= 1
                        return None
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def control(self, request: Request) -> Response:
        """The `/_sim/` control endpoints (see the module docstring)."""
        path, method = request.path, request.method
        try:
            data = json.loads(request.body) if request.body else None
            if path == "/_sim/ledger" and method == "GET":
                with self.lock:
                    return Response(200, self.ledger())
            if path == "/_sim/requests" and method == "GET":
                with self.lock:
                    return Response(200, [r.__dict__ for r in self.requests])
            if path == "/_sim/faults" and method == "POST":
                self.arm(_FAULTS.validate_python(data))
                return Response(204)
            if path == "/_sim/seed" and method == "POST":
                with self.lock:
                    self.seed(data)
                return Response(204)
            if path == "/_sim/reset" and method == "POST":
                self.reset()
                return Response(204)
        except ApiError as exc:
            return Response(exc.status, exc.body)
        except ValueError as exc:  # JSON or pydantic validation
            return Response(400, {"error": str(exc)})
        return Response(404, {"error": f"no admin route {method} {path}"})

    def dispatch(self, request: Request) -> Response:
        for route in self.routes:
            if route.method == request.method and (m := route.pattern.fullmatch(request.path)):
                request.params = m.groupdict()
                try:
                    with self.lock:
                        self.authenticate(request)
                        return route.handler(request)
                except ApiError as exc:
                    return Response(exc.status, exc.body)
        known = any(r.pattern.fullmatch(request.path) for r in self.routes)
        status = HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND
        return Response(
            status, self.error_body(status, f"no route {request.method} {request.path}")
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, simulator: Simulator, address: tuple[str, int]) -> None:
        self.simulator = simulator
        self.stopping = threading.Event()
        super().__init__(address, _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle each answer waits ~40 ms for an ACK.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log at /_sim/requests is the record."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        exchange = self.server.simulator.receive(
            self.command, self.path, self.headers.items(), body
        )
        if exchange.delay:
            self.server.stopping.wait(exchange.delay)
        response = exchange.answer()
        if response is None:
            self._drop()
        else:
            self._send(response)

    def _send(self, response: Response) -> None:
        headers, payload = response.encode()
        self.send_response(response.status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        """Close the connection without an answer, as a reset link or crashed provider does."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


@dataclass
class Running:
    simulator: Simulator
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> Iterator[Running]:
    """Run the simulator on a thread; port 0 picks a free port (see `Running.port`)."""
    server = _Server(simulator, (host, port))
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=simulator.name, daemon=True
    )
    thread.start()
    try:
        yield Running(simulator, host, server.server_address[1])
    finally:
        server.stopping.set()  # ends held `timeout` faults
        server.shutdown()
        server.server_close()
        thread.join()

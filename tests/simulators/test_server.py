"""The simulator server's fault injection and control endpoints, seen through the agent's real
HTTP seam (`agent.providers.http.ProviderClient`), each test over loopback HTTP and again over the
in-process transport: the same outcome both ways is what makes the transport faithful."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import pytest

from agent.errors import ErrorCode, ProviderError
from agent.providers.http import (
    OFFLINE_RETRY,
    ProviderClient,
    error_message,
)
from agent.providers.settings import HttpProviderSettings
from simulators.server import ApiError, Request, Response, Simulator, serve
from tests.served import CARRIERS, Carrier, Served, served


class Counter(Simulator):
    """A toy API: POST /count adds one; GET /count reads it. Needs `Authorization: k`."""

    name = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.value = 0
        self.route("POST", "/count", self.add)
        self.route("GET", "/count", self.read)
        self.route("GET", "/items/{item}", self.item)

    def authenticate(self, request: Request) -> None:
        if request.header("authorization") != "k":
            raise ApiError(401, ["Invalid key"])

    def add(self, request: Request) -> Response:
        self.value += (request.json() or {}).get("by", 1)
        return Response(200, {"value": self.value})

    def read(self, request: Request) -> Response:
        return Response(200, {"value": self.value})

    def item(self, request: Request) -> Response:
        return Response(200, {"item": request.params["item"]})

    def ledger(self) -> dict[str, int]:
        return {"value": self.value}


@pytest.fixture(params=CARRIERS)
def counter(request: pytest.FixtureRequest) -> Iterator[Served]:
    carrier: Carrier = request.param
    with served(Counter(), carrier) as counter:
        yield counter


def client(counter: Served, timeout: float = 2.0, key: str = "k") -> ProviderClient:
    settings = HttpProviderSettings(base_url=counter.url, timeout=timeout)
    return ProviderClient(
        "Counter", settings, headers={"Authorization": key}, transport=counter.transport
    )


def arm(counter: Served, *faults: dict[str, object]) -> None:
    counter.control.post("/_sim/faults", json=list(faults)).raise_for_status()


def ledger(counter: Served) -> dict[str, int]:
    body: dict[str, int] = counter.ledger()
    return body


def requests_log(counter: Served) -> list[dict[str, object]]:
    return counter.sent()


async def test_route_params_auth_and_ledger(counter: Served) -> None:
    api = client(counter)
    assert (await api.call("POST", "/count", write=True, json={"by": 2})).json() == {"value": 2}
    assert (await api.call("GET", "/items/abc", write=False)).json() == {"item": "abc"}
    refused = await client(counter, key="wrong").call("POST", "/count", write=True)
    assert refused.status_code == 401 and error_message(refused, "") == "Invalid key"
    missing = await api.call("GET", "/nowhere", write=False)
    assert missing.status_code == 404
    assert ledger(counter) == {"value": 2}
    await api.aclose()


async def test_request_log_keeps_raw_bodies_in_order(counter: Served) -> None:
    api = client(counter)
    await api.call("POST", "/count", write=True, json={"by": 1})
    await api.call("GET", "/count", write=False)
    log = requests_log(counter)
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/count", 200),
        ("GET", "/count", 200),
    ]
    assert log[0]["body"] == '{"by":1}'
    await api.aclose()


async def test_injected_503_applies_nothing_and_is_provider_unavailable(counter: Served) -> None:
    arm(counter, {"path": "/count", "method": "POST", "kind": "error", "status": 503})
    api = client(counter)
    with pytest.raises(ProviderError) as caught:
        await api.call("POST", "/count", write=True)
    assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert ledger(counter) == {"value": 0}
    # The fault hit one request only.
    assert (await api.call("POST", "/count", write=True)).json() == {"value": 1}
    await api.aclose()


async def test_500_on_a_write_is_an_unknown_outcome(counter: Served) -> None:
    arm(counter, {"path": "/count", "kind": "error", "status": 500})
    api = client(counter)
    with pytest.raises(ProviderError) as caught:
        await api.call("POST", "/count", write=True)
    assert caught.value.code == ErrorCode.UNKNOWN_OUTCOME
    await api.aclose()


async def test_drop_after_apply_is_an_unknown_outcome_and_the_change_is_there(
    counter: Served,
) -> None:
    arm(counter, {"path": "/count", "kind": "drop_after_apply"})
    api = client(counter)
    with pytest.raises(ProviderError) as caught:
        await api.call("POST", "/count", write=True)
    assert caught.value.code == ErrorCode.UNKNOWN_OUTCOME
    assert ledger(counter) == {"value": 1}
    log = requests_log(counter)
    assert log[-1]["status"] is None
    await api.aclose()


async def test_a_dropped_connection_is_the_error_httpx_raises_for_one(counter: Served) -> None:
    arm(counter, {"path": "/count", "kind": "drop_after_apply"})
    headers = {"Authorization": "k"}
    async with httpx.AsyncClient(
        base_url=counter.url, headers=headers, transport=counter.transport
    ) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post("/count")
    assert ledger(counter) == {"value": 1}


async def test_a_provider_that_never_answers_is_bounded_by_the_timeout(counter: Served) -> None:
    arm(counter, {"path": "/count", "kind": "timeout"}, {"path": "/count", "kind": "timeout"})
    api = client(counter, timeout=0.3)
    with pytest.raises(ProviderError) as write:
        await api.call("POST", "/count", write=True)
    with pytest.raises(ProviderError) as read:
        await api.call("GET", "/count", write=False)
    assert (write.value.code, read.value.code) == (
        ErrorCode.UNKNOWN_OUTCOME,
        ErrorCode.PROVIDER_UNAVAILABLE,
    )
    assert ledger(counter) == {"value": 0}
    await api.aclose()


async def test_slow_answer_within_the_timeout_arrives(counter: Served) -> None:
    arm(counter, {"path": "/count", "kind": "slow", "delay": 0.05})
    api = client(counter)
    assert (await api.call("POST", "/count", write=True)).json() == {"value": 1}
    await api.aclose()


async def until(condition: Callable[[], bool]) -> None:
    """Poll the simulator until `condition` holds (a condition, not a fixed sleep)."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_a_slow_answer_the_client_gave_up_on_is_applied_after_the_delay(
    counter: Served,
) -> None:
    """The provider does not notice the client leaving: the change lands when the delay is over,
    which is what makes a write that timed out an unknown outcome."""
    arm(counter, {"path": "/count", "kind": "slow", "delay": 0.6})
    api = client(counter, timeout=0.1)
    with pytest.raises(ProviderError) as caught:
        await api.call("POST", "/count", write=True)
    assert caught.value.code == ErrorCode.UNKNOWN_OUTCOME
    assert ledger(counter) == {"value": 0}  # not yet: the delay is 0.5 s longer than the timeout
    await until(lambda: ledger(counter) == {"value": 1})
    assert requests_log(counter)[-1]["status"] == 200
    await api.aclose()


async def test_a_path_segment_keeps_its_escapes_and_the_query_is_logged(counter: Served) -> None:
    api = client(counter)
    answer = await api.call("GET", "/items/a%2Fb", write=False, params={"x": "1 2", "y": ""})
    assert answer.json() == {"item": "a%2Fb"}
    assert requests_log(counter)[-1]["query"] == {"x": ["1 2"], "y": [""]}
    await api.aclose()


async def test_unreachable_provider_is_provider_unavailable() -> None:
    with serve(Counter()) as running:
        url = running.url
    settings = HttpProviderSettings(base_url=url, timeout=2)
    api = ProviderClient("Counter", settings, headers={})
    with pytest.raises(ProviderError) as caught:
        await api.call("POST", "/count", write=True)
    assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "nothing was sent" in caught.value.message
    await api.aclose()


async def test_an_unreachable_provider_is_refused_at_once_until_it_is_tried_again() -> None:
    """Offline refusal is immediate: after a failed connect, calls do not wait out timeouts."""
    with serve(Counter()) as running:
        url = running.url
    now = [100.0]
    settings = HttpProviderSettings(base_url=url, timeout=2)
    api = ProviderClient("Counter", settings, headers={}, clock=lambda: now[0])
    messages = []
    for advance in (0.0, 1.0, OFFLINE_RETRY):
        now[0] += advance
        with pytest.raises(ProviderError) as caught:
            await api.call("GET", "/count", write=False)
        assert caught.value.code == ErrorCode.PROVIDER_UNAVAILABLE
        messages.append(caught.value.message)
    assert "nothing was sent" in messages[0]
    assert "not tried again yet" in messages[1] and "unreachable (since" in messages[1]
    assert "nothing was sent" in messages[2]  # the window passed: it tried the network again
    await api.aclose()


def test_bad_fault_definitions_are_refused_with_the_reason(counter: Served) -> None:
    answer = counter.control.post("/_sim/faults", json=[{"kind": "explode"}])
    assert answer.status_code == 400 and "kind" in answer.json()["error"]


def test_error_message_reads_every_provider_shape() -> None:
    def shaped(body: object) -> str:
        return error_message(httpx.Response(422, json=body), "default")

    assert shaped({"error": "User not found"}) == "User not found"
    assert shaped({"error": {"message": "committed", "code": "commited"}}) == "committed"
    assert shaped({"message": "Bad code"}) == "Bad code"
    assert shaped(["Invalid LocationKey"]) == "Invalid LocationKey"
    assert shaped({"unexpected": 1}) == "default"
    assert error_message(httpx.Response(502, text="<html>"), "default") == "default"

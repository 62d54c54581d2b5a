"""The HTTP seam every remote provider adapter goes through: timeouts, secrets, and the mapping
from transport failures to the error vocabulary.

What a failure means for money depends on whether the request may have been applied:

- nothing was sent (connection refused, DNS, connect timeout), or the provider answered 503:
  `provider_unavailable`, safe to retry;
- the request was sent and no answer came back (read timeout, connection reset or closed):
  for a read, `provider_unavailable`; for a write, `unknown_outcome`, because the provider may
  have applied it, and likewise a write answered 500, 502 or 504. Callers resolve that before
  any retry; they never retry blindly.

Every call is bounded by `timeout` seconds in total (httpx's own timeouts are per phase, so a
provider dripping bytes could otherwise hold a lane for ever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from agent.errors import ErrorCode, ProviderError
from agent.providers.settings import HttpProviderSettings

log = logging.getLogger(__name__)

# A write answered with these may have been applied (an internal error part-way, or a gateway
# that gave up waiting); 503 and the rest say the provider did not take it.
MAYBE_APPLIED = frozenset({500, 502, 504})
# After a failure to connect, calls fail at once for this long before the next one tries.
OFFLINE_RETRY = 5.0


class ProviderClient:
    """One provider's HTTP client: `await client.call("POST", path, json=..., write=True)`."""

    def __init__(
        self,
        name: str,
        settings: HttpProviderSettings,
        *,
        headers: dict[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.timeout = settings.timeout
        self._clock = clock
        # When the provider could not be reached, until when calls are refused without trying.
        self._offline_until = 0.0
        self._offline_since: str | None = None
        self._http = httpx.AsyncClient(
            base_url=str(settings.base_url),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        write: bool,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (`headers` add to the client's); return any answer below 500 for
        the adapter to interpret.

        Right after the provider could not be reached, calls are refused at once for
        `OFFLINE_RETRY` seconds instead of each waiting out a connect timeout: the cashier hears
        at once that it is offline, and queued work (the outbox) simply retries later."""
        what = f"{self.name} {method} {path}"
        if self._clock() < self._offline_until:
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"{self.name} is unreachable (since {self._offline_since}); not tried again yet. "
                "This needs the provider online; try again shortly.",
            )
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._http.request(
                    method, path, json=json, params=params, headers=headers
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.warning("%s: not sent: %s", what, type(exc).__name__)
            if self._offline_since is None:
                self._offline_since = time.strftime("%H:%M:%S")
            self._offline_until = self._clock() + OFFLINE_RETRY
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"{self.name} cannot be reached; nothing was sent. Try again.",
            ) from exc
        except (TimeoutError, httpx.TransportError) as exc:
            log.warning("%s: sent, no answer: %s", what, type(exc).__name__ or "timeout")
            if write:
                raise ProviderError(
                    ErrorCode.UNKNOWN_OUTCOME,
                    f"{self.name} did not answer; it may have applied the request. "
                    "Do not retry until it is checked.",
                ) from exc
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"{self.name} did not answer in time. Try again."
            ) from exc
        self._offline_until, self._offline_since = 0.0, None
        status = response.status_code
        if status >= 500:
            log.warning("%s: HTTP %s", what, status)
            if write and status in MAYBE_APPLIED:
                raise ProviderError(
                    ErrorCode.UNKNOWN_OUTCOME,
                    f"{self.name} failed mid-request (HTTP {status}); it may have applied it. "
                    "Do not retry until it is checked.",
                )
            raise ProviderError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"{self.name} is having trouble (HTTP {status}). Try again.",
            )
        return response

    async def aclose(self) -> None:
        await self._http.aclose()


def error_message(response: httpx.Response, default: str) -> str:
    """The provider's own words from an error body, whichever of the usual shapes it uses:
    `{"error": "..."}`, `{"error": {"message": ...}}`, `{"message": ...}` or `["..."]`."""
    try:
        body = response.json()
    except ValueError:
        return default
    if isinstance(body, list) and body and all(isinstance(x, str) for x in body):
        return "; ".join(body)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):
            return error
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return default


@dataclass(frozen=True, slots=True)
class EndpointCheck:
    """What one endpoint answered a harmless call: `lane-agent diag providers` prints these so a
    wrong path or key shows on day one, not as uncaptured coupons."""

    endpoint: str  # what the adapter uses it for, and the setting or constant naming its path
    method: str
    path: str
    ok: bool
    detail: str


@runtime_checkable
class ChecksEndpoints(Protocol):
    """A provider that can try each endpoint it uses (optional: diag falls back to
    `check_health` for the others)."""

    async def check_endpoints(self) -> list[EndpointCheck]: ...


async def probe(
    client: ProviderClient,
    endpoint: str,
    method: str,
    path: str,
    *,
    json: Any = None,
    params: dict[str, str] | None = None,
) -> EndpointCheck:
    """Send a call that identifies nothing (an empty body, a made-up reference) and say what the
    answer means: a 400 or 422 is an endpoint that checked the key and then the body; 404 or 405
    is no such endpoint; 401 or 403 a refused key; a redirect a wrong `base_url`."""
    try:
        response = await client.call(method, path, write=False, json=json, params=params)
    except ProviderError as exc:
        return EndpointCheck(endpoint, method, path, False, exc.message)
    status = response.status_code
    said = error_message(response, "")
    answer = f"HTTP {status}" + (f" ({said})" if said else "")
    if status in (404, 405):
        verdict = f"{answer}: no such endpoint here; check the path and base_url"
    elif status in (401, 403):
        verdict = f"{answer}: the API key was refused"
    elif 300 <= status < 400:
        verdict = f"{answer}: redirected to {response.headers.get('location', '?')}; check base_url"
    elif status < 300:
        verdict = f"{answer}: answers"
    else:
        verdict = f"{answer}: answers and accepted the key (the probe itself is refused)"
    ok = status < 300 or status in (400, 409, 422)
    return EndpointCheck(endpoint, method, path, ok, verdict)

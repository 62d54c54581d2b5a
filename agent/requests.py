"""Turns `request/{op}` payloads into responses: decode, validate, run once per request_id.

Every payload gets an answer: malformed JSON, unknown ops and invalid params get an error
response, never silence. Answers are kept in SQLite (in the state directory) so a POS that repeats
a `request_id`, even across an agent restart, gets the first answer again and nothing is done twice.
A `request_id` repeated for another op or with other params is a POS bug that must not pass for
the first request's success: it is answered `request_id_conflict`. Over the lane's request limit
(agent/limits.py) a request is answered `busy`, with nothing done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from agent import statedb
from agent.contract import OPS, ErrorBody, OpSpec, Request, Response
from agent.errors import ErrorCode, LaneError, out_of_space
from agent.limits import RequestLimiter

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[BaseModel]]

# Answers that say "this request could not be understood" (or "not now": a keyed scan over the
# rate limit, a full disk) are not kept: the POS may fix and resend.
_NOT_KEPT = {
    ErrorCode.INVALID_REQUEST,
    ErrorCode.UNKNOWN_OP,
    ErrorCode.RATE_LIMITED,
    ErrorCode.STORAGE_FULL,
}
# Requests are a few levels deep (an order's items); deeper JSON is refused before it is walked.
MAX_DEPTH = 32
# Never limited, and answered ahead of other messages: a health ping is how a screen or a
# watchdog tells a busy lane from a dead one, so a flood must not make it look dead.
UNLIMITED_OPS = frozenset({"device.health"})


def _kept(spec: OpSpec, answer: Response) -> bool:
    """Whether the answer is kept for repeats of its request."""
    if spec.reads_only:
        return False
    code = None if answer.error is None else answer.error.code
    if code is ErrorCode.UNKNOWN_OUTCOME:
        return not spec.outcome_learnt_later
    return code not in _NOT_KEPT


class FirstUse(NamedTuple):
    """What a request_id was first used for. `digest` is None for an answer kept by an agent that
    did not compare params (or under a lost key): its repeats are taken as the same params."""

    op: str
    digest: str | None


class ResponseStore:
    """Durable request_id -> first answer and the digest of its params, pruned after `keep` s.

    The digest is an HMAC-SHA256 under a random key in a file beside the database: params carry
    clear codes (`scan.inject`'s data), and a plain hash of a 12-digit voucher code is undone by
    trying every code, so the table alone must not be enough to check a guess.
    """

    def __init__(self, path: Path, keep: float = 7 * 86400) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._key = _digest_key(path.with_suffix(".key"))
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        statedb.migrate(self._db, path, MIGRATIONS)
        self._forget_digests_of_another_key()
        self._db.execute("DELETE FROM responses WHERE created < ?", (time.time() - keep,))

    def _forget_digests_of_another_key(self) -> None:
        """Digests made under a key file that was since lost cannot be compared: they become
        unknown, like those of old rows, instead of making every repeat a conflict."""
        check = hmac.new(self._key, b"key check", hashlib.sha256).hexdigest()
        row = self._db.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
        if row is None or row[0] != check:
            self._db.execute("UPDATE responses SET params_digest = NULL")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('key_check', ?)", (check,))

    def digest(self, params: Request) -> str:
        """The params as validated, without request_id, as sorted JSON: the same request spelled
        differently (key order, spacing, a default written out) has the same digest."""
        canonical = json.dumps(
            params.model_dump(mode="json", exclude={"request_id"}),
            sort_keys=True,
            separators=(",", ":"),
        )
        return hmac.new(self._key, canonical.encode(), hashlib.sha256).hexdigest()

    def get(self, request_id: str) -> tuple[FirstUse, Response] | None:
        row = self._db.execute(
            "SELECT op, params_digest, answer FROM responses WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            return None
        return FirstUse(row[0], row[1]), Response.model_validate_json(row[2])

    def put(self, request_id: str, first: FirstUse, answer: Response) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO responses (request_id, op, answer, created, params_digest)"
            " VALUES (?, ?, ?, ?, ?)",
            (request_id, first.op, answer.model_dump_json(), time.time(), first.digest),
        )

    def close(self) -> None:
        self._db.close()


def _digest_key(path: Path) -> bytes:
    """The key of the params digests, made on first use, readable by the agent alone."""
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes()
        if len(key) == 32:
            return key
    key = secrets.token_bytes(32)
    partial = path.with_suffix(".key-new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)  # never a half-written key, even after a crash
    return key


def error_response(
    request_id: str | None, code: ErrorCode, message: str, details: dict[str, Any] | None = None
) -> Response:
    return Response(
        request_id=request_id,
        status="error",
        error=ErrorBody(code=code, message=message, details=details),
    )


def conflict(request_id: str, first: FirstUse, op: str, digest: str) -> Response | None:
    """The answer to a request_id repeated for another op or with other params, else None."""
    if first.op != op:
        used = f"op '{first.op}'"
    elif first.digest is not None and first.digest != digest:
        used = f"op '{first.op}' with other params"
    else:
        return None
    log.warning("request %s for op %s refused: it was already used for %s", request_id, op, used)
    return error_response(
        request_id,
        ErrorCode.REQUEST_ID_CONFLICT,
        f"request_id '{request_id}' was already used for {used}; nothing was done: send a new "
        "request_id for a new request",
        details={"first_op": first.op},
    )


def decode_json(payload: bytes) -> tuple[Any, str | None]:
    """The payload's JSON value, or an error saying why it is not one the agent accepts.

    Stricter than `json.loads` where laxness would come back to bite: UTF-8 only, no lone
    surrogates (`"\\ud800"` cannot be stored or sent back in an answer), at most MAX_DEPTH levels
    of nesting; and hostile input (`[[[[...`, a 5000-digit number) is an error, not an exception.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"payload is not JSON: not UTF-8 at byte {exc.start}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"payload is not JSON: {exc}"
    except RecursionError:
        return None, f"payload is not JSON the agent accepts: nested deeper than {MAX_DEPTH} levels"
    except ValueError as exc:  # e.g. an integer longer than int_max_str_digits
        return None, f"payload is not JSON the agent accepts: {exc}"
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return None, "payload is not JSON the agent accepts: a lone surrogate escape"
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return None, (
                    f"payload is not JSON the agent accepts: nested deeper than {MAX_DEPTH} levels"
                )
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return value, None


# An unknown field's name is the client's own text: echoed when it reads like a field name (a
# typo such as `amonut`), withheld when it could be data, e.g. a voucher code sent as a key.
_FIELD_NAME = re.compile(r"[A-Za-z_]{1,64}")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        text = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            text = "unknown field"
            if loc and not _FIELD_NAME.fullmatch(loc[-1]):
                loc[-1] = "(a name that is not a field name, not shown)"
        parts.append(f"{'.'.join(loc) or 'payload'}: {text}")
    return "; ".join(parts)


class RequestRouter:
    """Dispatches requests to handlers registered for the ops of the contract."""

    def __init__(
        self,
        store: ResponseStore,
        handlers: Mapping[str, Handler],
        *,
        max_payload: int = 65536,
        limiter: RequestLimiter | None = None,
    ) -> None:
        missing = set(OPS) - set(handlers)
        extra = set(handlers) - set(OPS)
        if missing or extra:
            raise ValueError(
                f"handlers do not match the contract: missing {missing}, extra {extra}"
            )
        self._store = store
        self._state_dir = store.path.parent
        self._max_payload = max_payload
        self._limiter = limiter
        self._handlers = dict(handlers)
        self._inflight: dict[str, tuple[FirstUse, asyncio.Future[Response]]] = {}

    async def handle(self, op: str, payload: bytes, *, refusal: str | None = None) -> Response:
        """The answer to a request; `refusal` (from the bus: retained, a forbidden Response Topic)
        answers it `invalid_request` with that reason and runs nothing."""
        if len(payload) > self._max_payload:
            return error_response(
                None,
                ErrorCode.INVALID_REQUEST,
                f"payload is {len(payload)} bytes; the limit is {self._max_payload}",
            )
        raw, problem = decode_json(payload)
        if problem is not None:
            return error_response(None, ErrorCode.INVALID_REQUEST, problem)
        request_id = raw.get("request_id") if isinstance(raw, dict) else None
        if not isinstance(request_id, str) or not request_id:
            return error_response(
                None, ErrorCode.INVALID_REQUEST, "payload must be a JSON object with a request_id"
            )
        if refusal is not None:
            return error_response(request_id, ErrorCode.INVALID_REQUEST, refusal)
        busy = self._busy(op, request_id)
        if busy is not None:
            return error_response(
                request_id,
                ErrorCode.BUSY,
                f"the lane is busy: {busy}; nothing was done: send the same request again in a "
                "moment",
            )
        spec = OPS.get(op)
        if spec is None:
            known = ", ".join(sorted(OPS))
            return error_response(
                request_id, ErrorCode.UNKNOWN_OP, f"unknown op '{op}'; known ops: {known}"
            )
        try:
            params = spec.params.model_validate(raw)
        except ValidationError as exc:
            return error_response(request_id, ErrorCode.INVALID_REQUEST, _validation_message(exc))
        return await self._once(op, params)

    def _busy(self, op: str, request_id: str) -> str | None:
        """Why the limiter refuses this request now, or None. A repeat of a running request
        adds no work (it waits for the first's answer) and is let through."""
        if self._limiter is None or op in UNLIMITED_OPS or request_id in self._inflight:
            return None
        return self._limiter.admit(len(self._inflight))

    async def _once(self, op: str, params: Request) -> Response:
        """Run a request at most once per request_id, also when the repeat arrives mid-flight;
        a repeat for another op or with other params is a conflict, never the first answer."""
        request_id = params.request_id
        digest = self._store.digest(params)
        running = self._inflight.get(request_id)
        if running is not None:
            first, pending = running
            refused = conflict(request_id, first, op, digest)
            return refused if refused is not None else await asyncio.shield(pending)
        kept = self._store.get(request_id)
        if kept is not None:
            first, answer = kept
            refused = conflict(request_id, first, op, digest)
            return refused if refused is not None else answer
        first = FirstUse(op, digest)
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._inflight[request_id] = (first, future)
        try:
            answer = await self._run(op, params)
            if _kept(OPS[op], answer):
                self._keep(request_id, first, answer)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # a repeat may not be waiting; mark the exception retrieved
            raise
        finally:
            del self._inflight[request_id]

    def _keep(self, request_id: str, first: FirstUse, answer: Response) -> None:
        """Keep the answer for repeats; with the disk full it is given once, unkept: a repeat
        then runs the op again, which each flow answers from its own records."""
        try:
            self._store.put(request_id, first, answer)
        except sqlite3.Error as exc:
            if not out_of_space(exc):
                raise
            log.error(
                "answer to request %s not kept: no space left in %s", request_id, self._state_dir
            )

    async def _run(self, op: str, params: Request) -> Response:
        try:
            result = await self._handlers[op](params)
        except LaneError as exc:
            return Response(request_id=params.request_id, status="error", error=ErrorBody.of(exc))
        except Exception as exc:
            if out_of_space(exc):
                log.error(
                    "op %s (request %s) refused: no space left for the agent's records in %s",
                    op,
                    params.request_id,
                    self._state_dir,
                )
                return error_response(
                    params.request_id,
                    ErrorCode.STORAGE_FULL,
                    "the lane device's disk is full: the agent could not record this step before "
                    "doing it, so it stopped. Free space, then send the same request again: what "
                    "was already done is answered, never done twice",
                )
            log.exception("op %s (request %s) failed", op, params.request_id)
            return error_response(
                params.request_id,
                ErrorCode.INTERNAL,
                "internal error in the agent; the agent log has the details",
            )
        return Response(
            request_id=params.request_id, status="ok", data=result.model_dump(mode="json")
        )


def _add_params_digest(db: sqlite3.Connection) -> None:
    """Params compared by digest (request_id_conflict); rows kept before have none."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
    if "params_digest" not in columns:  # an unversioned file may have it already
        db.execute("ALTER TABLE responses ADD COLUMN params_digest TEXT")
    db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")


# requests.sqlite's schema steps (agent/statedb.py); append, never edit one that shipped.
MIGRATIONS: tuple[statedb.Step, ...] = (
    statedb.script(
        "CREATE TABLE IF NOT EXISTS responses (request_id TEXT PRIMARY KEY, op TEXT NOT NULL,"
        " answer TEXT NOT NULL, created REAL NOT NULL)"
    ),
    _add_params_digest,
)

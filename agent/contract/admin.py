"""Fleet administration: the lane's retained inventory record (`{base}/info`) and the `admin.*`
ops a fleet identity sends it over the bridge (docs/fleet.md). The store broker's ACL lets no
POS screen send them (docs/security/lane-agent.acl); every one is audited as an event."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from agent.contract.base import OpSpec, Request, _Payload
from agent.errors import ErrorCode
from drivers.base import DeviceState

ADMIN_PREFIX = "admin."

LogLevel = Literal["debug", "info", "warning", "error"]
ApplyOutcome = Literal["applied", "rolled_back"]


class InfoDevice(_Payload):
    device_id: str
    kind: str
    state: DeviceState


class OutboxSummary(_Payload):
    pending: int = Field(description="entries the agent still retries")
    dead: int = Field(description="entries given up: a person settles them")
    oldest: datetime | None = Field(None, description="when the oldest entry not done was written")


class LastError(_Payload):
    at: datetime
    message: str = Field(description="the agent's last ERROR log line (masked, as logged)")


class ApplyRecord(_Payload):
    """How the last `admin.config.apply` ended: the new config came back online (`applied`), or
    the previous one was restored (`rolled_back`, with the reason)."""

    request_id: str
    outcome: ApplyOutcome
    config_hash: str = Field(description="the config that was applied, or that failed")
    at: datetime
    reason: str | None = None


class ConfigInfo(_Payload):
    hash: str = Field(description="SHA-256 of the config file the agent runs, hex")
    source: Literal["base", "fleet"] = Field(
        description="`base`: the file given with --config; `fleet`: one applied by "
        "admin.config.apply, kept in the state directory"
    )
    path: str
    pending: str | None = Field(
        None, description="request_id of an apply waiting for the agent to come back online"
    )
    last_apply: ApplyRecord | None = None


class LogLevelInfo(_Payload):
    level: LogLevel
    until: datetime | None = Field(None, description="when a temporary level reverts")


class HealthSummary(_Payload):
    ok: bool
    problems: list[str] = Field(
        default_factory=list,
        description="devices not connected, broker errors, dead outbox entries; providers are "
        "checked by `device.health`, not here",
    )


class LaneInfo(_Payload):
    """`{base}/info`, retained: what a fleet operator needs to know of a lane without asking it.
    Published when it changes and at least every few minutes (`uptime_s`, `outbox`)."""

    store: str
    lane: str
    version: str
    started: datetime
    uptime_s: int
    config: ConfigInfo
    devices: list[InfoDevice]
    providers: list[str] = Field(description="the configured `[providers]` tables")
    flows: dict[str, str] = Field(description="flow -> the provider that runs it")
    health: HealthSummary
    outbox: OutboxSummary
    last_error: LastError | None = None
    log: LogLevelInfo
    ts: datetime


class BundleChunk(_Payload):
    """`{base}/admin/bundle/{request_id}`: one piece of a support bundle, in order."""

    request_id: str
    seq: int = Field(description="0-based")
    chunks: int
    data: str = Field(description="base64 of this piece of the .tar.gz")


class AdminConfigGetParams(Request):
    """The config the agent runs, redacted: key files by path, never their contents."""


class ConfigText(_Payload):
    path: str
    source: Literal["base", "fleet"]
    hash: str
    text: str = Field(description="the TOML file; anything that looks like a secret redacted")


class ConfigApplyParams(Request):
    """Validated as `lane-agent check-config` does before anything changes; then written, and the
    agent restarts with it. One text serves many lanes: `${store}` and `${lane}` in it become
    this lane's ids, and a config without a `[lane]` table gets this lane's. One for another
    lane, store, prefix or state directory is refused."""

    config: str = Field(min_length=1, max_length=60_000, description="the TOML text")
    timeout: float = Field(
        120.0,
        ge=5,
        le=3600,
        description="seconds the agent has to come back online with it before the previous "
        "config is restored",
    )


class ConfigApplyResult(_Payload):
    changed: bool = Field(description="false: the lane runs this config already; no restart")
    config_hash: str
    previous_hash: str
    deadline: datetime | None = Field(None, description="when the previous config is restored")


class AdminRestartParams(Request):
    reason: str | None = Field(None, max_length=200)


class AdminRestartResult(_Payload):
    exit_code: int = Field(description="the agent exits with it; systemd starts it again")


class LogLevelParams(Request):
    level: LogLevel
    minutes: int = Field(ge=1, le=1440, description="then the level of the config again")


class OutboxListParams(Request):
    state: Literal["open", "pending", "dead", "all"] = Field(
        "open", description="`open`: pending and dead"
    )
    limit: int = Field(100, ge=1, le=500)


class OutboxListEntry(_Payload):
    id: int
    key: str = Field(description="order:flow:phase")
    state: Literal["pending", "done", "dead"]
    attempts: int
    next_at: datetime
    created: datetime
    last_error: str | None


class OutboxListResult(_Payload):
    entries: list[OutboxListEntry]
    total: int = Field(description="entries in that state, of which `entries` are the first")


class OutboxRetryParams(Request):
    id: int = Field(ge=1)


class BundleParams(Request):
    """The request_id names the chunks' topic: one topic level of letters, digits, `._:-`."""

    request_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    chunk_size: int = Field(
        32_768, ge=1024, le=48_000, description="bytes of archive per chunk (before base64)"
    )


class BundleResult(_Payload):
    topic: str = Field(description="where the chunks were published, before this answer")
    chunks: int
    size: int
    sha256: str = Field(description="of the whole archive")
    name: str = Field(description="a file name for it")


class AdminAuditData(_Payload):
    """An admin op was asked for and answered (`admin.*`, from the fleet)."""

    op: str
    request_id: str | None
    status: Literal["ok", "error"]
    detail: str


class ConfigAppliedData(_Payload):
    """The config of an `admin.config.apply` came back online; it is now the last good one."""

    request_id: str
    config_hash: str


class ConfigRolledBackData(_Payload):
    """The config of an `admin.config.apply` did not come back online in time, or failed to
    start; the previous one was restored and runs."""

    request_id: str
    config_hash: str = Field(description="the config that failed")
    restored_hash: str
    reason: str


EVENTS: dict[str, type[_Payload]] = {
    "admin.audit": AdminAuditData,
    "config.applied": ConfigAppliedData,
    "config.rolled_back": ConfigRolledBackData,
}

OPS: dict[str, OpSpec] = {
    "admin.config.get": OpSpec(
        AdminConfigGetParams,
        ConfigText,
        "fleet only: the config the lane runs, redacted (key files by path)",
        errors=(),
        reads_only=True,
    ),
    "admin.config.apply": OpSpec(
        ConfigApplyParams,
        ConfigApplyResult,
        "fleet only: validate a config, write it, restart with it; restored if it does not "
        "come back online in time",
        errors=(ErrorCode.STORAGE_FULL,),
    ),
    "admin.restart": OpSpec(
        AdminRestartParams,
        AdminRestartResult,
        "fleet only: answer, then exit so that systemd starts the agent again",
        errors=(),
    ),
    "admin.log_level": OpSpec(
        LogLevelParams,
        LogLevelInfo,
        "fleet only: another log level for some minutes",
        errors=(),
    ),
    "admin.outbox.list": OpSpec(
        OutboxListParams,
        OutboxListResult,
        "fleet only: the work closed orders still owe (as `lane-agent outbox list`)",
        errors=(),
        reads_only=True,
    ),
    "admin.outbox.retry": OpSpec(
        OutboxRetryParams,
        OutboxListEntry,
        "fleet only: try an outbox entry again now (also a dead one)",
        errors=(ErrorCode.NOT_FOUND,),
    ),
    "admin.diag.bundle": OpSpec(
        BundleParams,
        BundleResult,
        "fleet only: the redacted support bundle, in chunks on `{base}/admin/bundle/{request_id}`",
        errors=(),
        reads_only=True,
    ),
}

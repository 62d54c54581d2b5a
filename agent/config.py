"""The agent's one TOML config file, validated by pydantic, with errors a technician can act on.

Every problem is reported with its key path (`mqtt.port: must be 1..65535`), all at once, by both
`lane-agent check-config` and the daemon at start-up. Secrets never live in this file: each secret
is read from a `*_file` key or from `$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`).
"""

from __future__ import annotations

import difflib
import errno
import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    create_model,
)

from agent import registry
from agent.errors import LaneError
from agent.normalise import NormaliserSettings
from agent.registry import FLOW_NAMES, FlowName
from agent.secrets import read_key
from drivers.settings import HidPosSettings, KeyboardSettings, NfcSettings, SerialSettings

# Exit status for a configuration the agent cannot run with; the unit does not restart on it.
EXIT_CONFIG = 2

DEFAULT_CONFIG_PATH = Path("/etc/lane-agent/lane-agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/lane-agent")
# What the state directory must have free for the agent to start: its databases' first pages and
# a few transactions. Less, and it would refuse payments (`storage_full`) within minutes.
STATE_MIN_FREE = 256 * 1024

# Keys that hold a secret when written inline; the error then says where secrets go instead.
_SECRET_KEYS = {"password", "api_key", "apikey", "token", "secret", "key_password", "btoken"}


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be 1..65535")
    return value


def _topic_level(value: str) -> str:
    bad = {"/", "+", "#", "\0"} & set(value)
    if not value or bad or len(value) > 64:
        raise ValueError("must be 1..64 characters without '/', '+', '#'")
    return value


def _topic_prefix(value: str) -> str:
    if not value or {"+", "#", "\0"} & set(value) or value.startswith("/") or value.endswith("/"):
        raise ValueError("must be a topic prefix without wildcards or leading/trailing '/'")
    return value


Port = Annotated[int, Strict(), AfterValidator(_port)]
"""A TOML integer: `port = "1883"` is a mistake worth naming, not a string to coerce."""
TopicLevel = Annotated[str, AfterValidator(_topic_level)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LaneSettings(_Section):
    store: TopicLevel
    lane: TopicLevel


class TlsSettings(_Section):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(False, description="skip hostname verification (testing only)")


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: Port = 1883
    prefix: Annotated[str, AfterValidator(_topic_prefix)] = "lane-agent"
    client_id: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="MQTT client id; default `lane-agent-{store}-{lane}-{hostname}`. A broker "
        "with `use_username_as_clientid` (docs/security.md) replaces it with the user name",
    )
    username: str | None = None
    password_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: int = Field(30, ge=5, le=3600)
    tls: TlsSettings | None = None
    reconnect_min: float = Field(0.5, gt=0, le=60)
    reconnect_max: float = Field(30.0, gt=0, le=600)
    max_payload: int = Field(65536, ge=1024, le=1_000_000)
    outgoing_queue: int = Field(
        1000, ge=10, le=100_000, description="messages kept while the broker is unreachable"
    )
    request_rate: float = Field(
        50.0,
        ge=0,
        le=10_000,
        description="requests a second the lane takes from its screens together; more are "
        "answered `busy` (0: no limit; `device.health` is never limited)",
    )
    request_burst: int = Field(100, ge=1, le=100_000, description="requests over the rate at once")
    request_pending: int = Field(
        32, ge=1, le=10_000, description="requests running at once; more are answered `busy`"
    )


class FifoDeviceSettings(_Section):
    type: Literal["fifo"]
    path: Path
    unescape: bool = Field(True, description="decode \\r \\n \\t \\xHH \\\\ in each line")
    symbology: str | None = None


DeviceSettings = Annotated[
    FifoDeviceSettings | KeyboardSettings | SerialSettings | HidPosSettings | NfcSettings,
    Field(discriminator="type"),
]
DEVICE_TYPES = ("fifo", "evdev", "serial", "hidpos", "nfc")


class FlowSettingsBase(_Section):
    """Which configured provider runs each flow, and which token kinds go to which flow."""

    routes: dict[str, Literal["gift", "card", "coupons", "loyalty", "none"]] = Field(
        default_factory=dict,
        description='token kind -> flow, overriding the defaults (e.g. phone = "loyalty"; '
        '"none" only publishes the scan)',
    )

    def provider(self, flow: FlowName) -> str | None:
        named: str | None = getattr(self, flow)
        return named


# The tables are made from the registry: one optional `[providers.<name>]` per provider, one
# `[flows]` key per flow. mypy sees their bases, which is what the code reads through.
if TYPE_CHECKING:
    ProvidersSettings = _Section
    FlowSettings = FlowSettingsBase
else:
    ProvidersSettings = create_model(
        "ProvidersSettings",
        __base__=_Section,
        __doc__="One table per provider this lane talks to; `[flows]` says which flow uses which.",
        **{spec.name: (spec.settings | None, None) for spec in registry.PROVIDERS},
    )
    FlowSettings = create_model(
        "FlowSettings",
        __base__=FlowSettingsBase,
        __doc__=FlowSettingsBase.__doc__,
        **{
            spec.name: (
                str | None,
                Field(
                    None,
                    description=f"provider for {spec.summary.split(':')[0]} "
                    f"({', '.join(registry.able(spec.name))})"
                    + ("; default: sandbox" if spec.name == "gift" else ""),
                ),
            )
            for spec in registry.FLOWS
        },
    )


class StateSettings(_Section):
    dir: Path | None = Field(
        None, description="default: $STATE_DIRECTORY (systemd) or /var/lib/lane-agent"
    )
    token_ttl: float = Field(
        1800.0, gt=0, description="seconds a scanned code stays redeemable by token_id"
    )
    token_max: int = Field(
        2000,
        ge=1,
        description="scanned codes kept redeemable at once; beyond it the oldest is forgotten, "
        "so a stuck scanner cannot grow the agent's memory",
    )


class ScanSettings(_Section):
    """Each input device's scan rate limit (keyed entry included): a token bucket per device."""

    rate: float = Field(
        20.0,
        ge=0,
        le=100_000,
        description="scans per second one device may send for as long as it likes; "
        "0 switches the limit off",
    )
    burst: int = Field(
        40, ge=1, le=100_000, description="scans one device may send back to back above `rate`"
    )


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class HomeAssistantSettings(_Section):
    """Home Assistant MQTT discovery of the lane and its devices (docs/homeassistant.md)."""

    discovery: bool = Field(
        False,
        description="publish retained discovery configs for the lane and its devices on every "
        "connect",
    )
    prefix: Annotated[str, AfterValidator(_topic_prefix)] = Field(
        "homeassistant", description="Home Assistant's discovery prefix"
    )


class Config(_Section):
    lane: LaneSettings
    mqtt: MqttSettings = MqttSettings()
    devices: dict[TopicLevel, DeviceSettings] = {}
    providers: ProvidersSettings = ProvidersSettings()
    flows: FlowSettings = FlowSettings()
    normaliser: NormaliserSettings = NormaliserSettings()
    scans: ScanSettings = ScanSettings()
    state: StateSettings = StateSettings()
    log: LogSettings = LogSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()

    @property
    def base_topic(self) -> str:
        return f"{self.mqtt.prefix}/{self.lane.store}/{self.lane.lane}"

    def state_dir(self) -> Path:
        if self.state.dir is not None:
            return self.state.dir
        env = os.environ.get("STATE_DIRECTORY")
        return Path(env.split(":")[0]) if env else DEFAULT_STATE_DIR

    def configured_providers(self) -> list[str]:
        return [name for name, value in self.providers if value is not None]

    def provider_settings(self, name: str) -> BaseModel | None:
        """The `[providers.<name>]` table, if the lane has one."""
        settings: BaseModel | None = getattr(self.providers, name)
        return settings

    def flow_provider(self, flow: FlowName) -> str | None:
        """The provider running `flow`: the one `[flows]` names, else the only configured
        provider able to run it (so a lane with just `[providers.punchh]` needs no [flows])."""
        named = self.flows.provider(flow)
        if named is not None:
            return named
        able = [p for p in self.configured_providers() if p in registry.able(flow)]
        return able[0] if len(able) == 1 else None

    def kind_routes(self) -> dict[str, FlowName]:
        """Token kind -> flow, for flows that have a provider: defaults, then `[flows.routes]`."""
        has = {flow for flow in FLOW_NAMES if self.flow_provider(flow) is not None}

        def first(*flows: FlowName) -> FlowName | None:
            return next((f for f in flows if f in has), None)

        defaults = {kind: first(*flows) for kind, flows in registry.ROUTES.items()}
        merged: dict[str, str | None] = {**defaults, **self.flows.routes}
        return {k: cast(FlowName, f) for k, f in merged.items() if f not in (None, "none")}


class ConfigError(Exception):
    """Raised with every problem found; each line names its key path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at `loc` accepts, for 'did you mean' hints."""
    models: list[type[BaseModel]] = [Config]
    for part in loc[:-1]:
        fields = [m.model_fields[str(part)] for m in models if str(part) in m.model_fields]
        # A part that is no field is a table name the user chose (`devices.<name>`): stay put.
        if fields:
            models = [m for f in fields for m in _models_in(f.annotation)]
    return [key for m in models for key in m.model_fields]


def _describe(error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    if len(loc) > 2 and loc[0] == "devices" and loc[2] in DEVICE_TYPES:
        # The discriminated union adds the device type as a path element; the TOML has none.
        loc = loc[:2] + loc[3:]
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if key.lower() in _SECRET_KEYS:
            return (
                f"{path}: secrets are not accepted in the config file; use {key}_file = "
                f'"/path/to/file" or systemd LoadCredential='
            )
        hint = difflib.get_close_matches(key, _known_keys(loc), n=1)
        return f"{path}: unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    if kind == "missing":
        return f"{path}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{path}: {message}"


def parse_config(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None


def _check_secrets(config: Config) -> list[str]:
    problems = []
    secret_files = {"mqtt.password_file": config.mqtt.password_file}
    if config.mqtt.tls is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            secret_files[f"mqtt.tls.{name}"] = getattr(config.mqtt.tls, name)
    for key, path in secret_files.items():
        reason = None if path is None else _unreadable(path)
        if reason is not None:
            problems.append(f"{key}: {path}: {reason}")
    if config.mqtt.password_file is not None and config.mqtt.username is None:
        problems.append("mqtt.username: required when mqtt.password_file is set")
    return problems


def _unreadable(path: Path) -> str | None:
    """Why the agent could not read the file, by reading it as the agent will (a directory
    passes `os.access`), or None."""
    try:
        with path.open("rb") as file:
            file.read(1)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "a directory, not a file"
    except PermissionError:
        return "not readable by this user"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


def _check_flows(config: Config) -> list[str]:
    problems = []
    configured = config.configured_providers()
    known = ", ".join(configured) or "none"
    for flow in FLOW_NAMES:
        name = config.flows.provider(flow)
        able = [p for p in configured if p in registry.able(flow)]
        if name is None and len(able) > 1:
            problems.append(f"flows.{flow}: set it to one of {', '.join(able)}")
        if name is None:
            continue
        if name not in configured:
            problems.append(
                f"flows.{flow}: provider '{name}' is not configured under [providers] ({known})"
            )
        elif name not in registry.able(flow):
            fits = ", ".join(registry.able(flow))
            problems.append(f"flows.{flow}: provider '{name}' cannot run it (use one of: {fits})")
    for kind, target in config.flows.routes.items():
        if target != "none" and config.flow_provider(target) is None:
            problems.append(
                f"flows.routes.{kind}: flow '{target}' has no provider (set flows.{target})"
            )
    return problems


def _check_keys(config: Config) -> list[str]:
    """Read every configured provider's keys as the agent will, so a key file the service user
    cannot read fails here, not at the first sale."""
    problems = []
    for name in config.configured_providers():
        settings = config.provider_settings(name)
        assert settings is not None
        for setting in registry.provider_spec(name).keys:
            try:
                read_key(f"providers.{name}", settings, setting)
            except LaneError as exc:
                problems.append(exc.message)
    return problems


def check_state_dir(config: Config) -> list[str]:
    """The state directory's problems, found the way the agent would meet them: by writing there.
    Only `run` and `check-config` look (the agent's records live there); the tools that only
    read the config (`diag`, `parse`, `outbox`) must work on a full disk too."""
    path = config.state_dir()
    where = f"state.dir: {path}"
    if not path.exists():
        parent = next(p for p in path.parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return [f"{where}: does not exist, and {parent} does not let this user create it"]
        return []  # the agent creates it
    if not path.is_dir():
        return [f"{where}: not a directory"]
    try:
        _write_probe(path)
        disk = os.statvfs(path)
    except OSError as exc:
        return [f"{where}: {_write_problem(exc)}"]
    if disk.f_bavail * disk.f_frsize < STATE_MIN_FREE:
        return [f"{where}: {_NO_ROOM}"]
    return [  # the agent rewrites every file it keeps there
        f"{where}: {file.name}: not writable by this user"
        for file in sorted(path.iterdir())
        if file.is_file() and not os.access(file, os.R_OK | os.W_OK)
    ]


_NO_ROOM = f"no room for the agent's records (it needs {STATE_MIN_FREE // 1024} KiB free)"


def _write_probe(path: Path) -> None:
    probe = path / f".lane-agent-check-{os.getpid()}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"\0")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink()


def _write_problem(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return _NO_ROOM
    if exc.errno == errno.EROFS:
        return "on a read-only file system"
    if exc.errno == errno.EACCES:
        return "not writable by this user"
    return f"cannot write there: {exc.strerror or exc}"


def load_config(path: Path) -> Config:
    """Read, parse and validate; raise ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    config = parse_config(data)
    problems = _check_secrets(config) + _check_flows(config) + _check_keys(config)
    if problems:
        raise ConfigError(problems)
    return config

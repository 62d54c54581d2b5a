"""`lane-agent`: the daemon and the tools a technician or POS developer runs next to it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.config import (
    DEFAULT_CONFIG_PATH,
    EXIT_CONFIG,
    Config,
    ConfigError,
    check_state_dir,
    load_config,
)

EPILOG = """\
examples:
  lane-agent init --output /etc/lane-agent/lane-agent.toml
  lane-agent check-config /etc/lane-agent/lane-agent.toml
  printf '100000000001\\n]E05901234123457\\n' | lane-agent parse
  lane-agent schema request:gift.redeem
  lane-agent demo          # agent + broker + sandbox ledger + live MQTT view, type codes to scan

docs: README.md, docs/mqtt-api.md, docs/config.md
"""


def _default_config() -> Path:
    return Path(os.environ.get("LANE_AGENT_CONFIG", DEFAULT_CONFIG_PATH))


def _load_or_report(path: Path, *, keeps_state: bool = False) -> Config | None:
    """The config, or None after printing its problems; `keeps_state`: also those of the state
    directory, for the commands that start the agent or vouch for it."""
    try:
        config = load_config(path)
        if keeps_state and (problems := check_state_dir(config)):
            raise ConfigError(problems)
        return config
    except ConfigError as exc:
        _report(path, exc)
        return None


def _report(path: Path, exc: ConfigError) -> None:
    print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from agent.app import run_daemon
    from agent.logs import setup_logging
    from agent.rollout import ConfigStore
    from agent.systemd import Notifier

    config = _load_or_report(args.config, keeps_state=True)
    if config is None:
        Notifier().status(f"refusing to start: invalid config {args.config}")
        return EXIT_CONFIG
    setup_logging(args.log_level or config.log.level)
    # A config the fleet applied (admin.config.apply) runs instead, or is rolled back here.
    store = ConfigStore(args.config, config.state_dir())
    try:
        config = store.start()
    except ConfigError as exc:
        _report(store.path, exc)
        Notifier().status(f"refusing to start: invalid config {store.path}")
        return EXIT_CONFIG
    setup_logging(args.log_level or config.log.level)
    return asyncio.run(run_daemon(config, store))


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load_or_report(args.file, keeps_state=True)
    if config is None:
        return EXIT_CONFIG
    devices = ", ".join(["keyed", *config.devices]) or "none"
    providers = ", ".join(config.configured_providers()) or "none"
    print(f"{args.file}: OK")
    print(f"  base topic: {config.base_topic}")
    print(f"  broker:     {config.mqtt.host}:{config.mqtt.port} (MQTT {config.mqtt.protocol})")
    print(f"  devices:    {devices}")
    print(f"  providers:  {providers}")
    print(f"  state dir:  {config.state_dir()}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from agent import initconfig

    text = initconfig.render([], [], []) if args.no_devices else initconfig.discover_and_render()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    # Never over an existing config: a lane's working file is worth more than a template.
    try:
        with args.output.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        print(f"{args.output} exists; not overwriting it (remove it first)", file=sys.stderr)
        return 1
    print(f"wrote {args.output}; edit the lines marked EDIT, then check it with:")
    print(f"  lane-agent check-config {args.output}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from agent.normalise import Normaliser, NormaliserSettings, run_parse

    settings = NormaliserSettings()
    if args.config is not None:
        config = _load_or_report(args.config)
        if config is None:
            return EXIT_CONFIG
        settings = config.normaliser
    invalid = run_parse(sys.stdin, sys.stdout, Normaliser(settings), args.symbology)
    return 1 if invalid and args.strict else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from agent.contract import json_schemas

    schemas = json_schemas()
    if args.list:
        print("\n".join(schemas))
        return 0
    if args.name is None:
        print(json.dumps(schemas, indent=2))
        return 0
    if args.name not in schemas:
        print(
            f"no schema named {args.name!r}; `lane-agent schema --list` shows them", file=sys.stderr
        )
        return 1
    print(json.dumps(schemas[args.name], indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    args.dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(
        run_demo(
            args.dir,
            port=args.port,
            ws_port=args.ws_port,
            web_port=args.web_port,
            broker_kind=args.broker,
        )
    )


def _diag_config(args: argparse.Namespace, required: bool) -> tuple[int, Config | None]:
    path: Path = args.config
    if not path.exists() and not required:
        return 0, None
    config = _load_or_report(path)
    return (EXIT_CONFIG, None) if config is None else (0, config)


def cmd_diag(args: argparse.Namespace) -> int:
    from agent import diag

    code, config = _diag_config(args, required=args.diag in {"monitor", "health", "providers"})
    if code:
        return code
    if args.diag == "devices":
        return diag.print_devices(config, sys.stdout, as_json=args.json)
    if args.diag == "bundle":
        archive = diag.bundle(args.config, config, args.output)
        print(f"wrote {archive}; send it to support (no secrets or codes inside)")
        return 0
    assert config is not None
    if args.diag == "health":
        return asyncio.run(diag.health(config, sys.stdout))
    if args.diag == "providers":
        return asyncio.run(diag.providers(config, sys.stdout))

    async def run_monitor() -> int:
        from agent.app import install_signal_handlers

        stop = asyncio.Event()
        install_signal_handlers(stop)
        trace = print if args.keys else None
        return await diag.monitor(
            config, args.device, sys.stdout, grab=not args.no_grab, stop=stop, trace=trace
        )

    return asyncio.run(run_monitor())


def cmd_outbox(args: argparse.Namespace) -> int:
    """List, retry or drop the work closed orders still owe (the agent may be running: SQLite
    in WAL mode lets both use the file, and the running worker sees a retried entry)."""
    import sqlite3

    from agent.outbox import EntryState, Outbox

    config = _load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    path = config.state_dir() / "orders.sqlite"
    if not path.exists():
        print(f"no outbox yet at {path}: this lane has not closed an order")
        return 0
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    outbox = Outbox(db)
    if args.action == "list":
        entries = outbox.entries(EntryState.PENDING if args.pending else None)
        if not args.all:
            entries = [e for e in entries if e.state is not EntryState.DONE]
        if not entries:
            print("nothing owed: every closed order's work is done")
        for e in entries:
            when = (
                f"next try {e.next_at:%Y-%m-%d %H:%M:%S}Z" if e.state is EntryState.PENDING else ""
            )
            print(f"{e.id:>6}  {e.state:<7}  {e.key:<40} attempts {e.attempts:<3} {when}")
            if e.last_error:
                print(f"        last error: {e.last_error}")
        return 0
    entry = outbox.get(args.id)
    if entry is None:
        print(f"no outbox entry {args.id}; `lane-agent outbox list` shows them", file=sys.stderr)
        return 1
    if args.action == "retry":
        if not outbox.retry_now(entry.id):
            print(f"entry {entry.id} ({entry.key}) is already done", file=sys.stderr)
            return 1
        print(f"entry {entry.id} ({entry.key}) will be tried again now by the running agent")
        return 0
    print(f"entry {entry.id}: {entry.key}, {entry.state}, {entry.attempts} attempts")
    if entry.last_error:
        print(f"  last error: {entry.last_error}")
    if not args.yes:
        answer = input("Drop it? The agent will never do this work; settle it by hand. [y/N] ")
        if answer.strip().lower() not in {"y", "yes"}:
            print("kept")
            return 1
    outbox.drop(entry.id)
    print(f"dropped entry {entry.id}")
    return 0


def cmd_kseries_notify(args: argparse.Namespace) -> int:
    from agent import kseries_notify
    from agent.app import install_signal_handlers
    from agent.logs import setup_logging

    try:
        settings = kseries_notify.load_settings(args.config)
        kseries_notify.password_of(settings)
    except ValueError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(args.log_level)

    async def serve() -> int:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        return await kseries_notify.run(settings, stop)

    return asyncio.run(serve())


def cmd_fleet(args: argparse.Namespace) -> int:
    """The operator's commands at the central broker (agent/fleet.py)."""
    from agent import fleet

    try:
        settings = fleet.load_settings(args.config)
    except ConfigError as exc:
        _report(args.config, exc)
        return EXIT_CONFIG

    def lane_of(text: str) -> tuple[str, str]:
        store, _, lane = text.partition("/")
        if not store or not lane or "/" in lane:
            raise SystemExit(f"lane-agent fleet: {text!r}: give a lane as STORE/LANE, e.g. s1/l1")
        return store, lane

    async def run() -> int:
        async with fleet.Central.connect(settings) as central:
            out = sys.stdout
            if args.fleet == "ls":
                rows = await fleet.list_lanes(central, args.store, args.wait)
                fleet.print_rows(rows, out, args.json)
                return 0
            if args.fleet == "apply":
                text = args.file.read_text(encoding="utf-8")
                lanes = args.lanes.split(",") if args.lanes else None
                return await fleet.apply(
                    central, text, args.store, lanes, args.canary, args.timeout, out
                )
            store, lane = lane_of(args.lane)
            if args.fleet == "bundle":
                return await fleet.bundle(central, store, lane, args.output, out)
            if args.fleet == "restart":
                return await fleet.restart(central, store, lane, out)
            return await fleet.log_level(central, store, lane, args.level, args.minutes, out)

    try:
        return asyncio.run(run())
    except TimeoutError:
        print("lane-agent fleet: no answer in time (is the lane online?)", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lane-agent",
        description="Checkout-lane device agent: scanners and NFC readers to gift, loyalty and "
        "coupon flows, published over MQTT for the POS screens.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lane-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run the daemon (what the systemd unit starts)",
        description="Run the agent until SIGTERM/SIGINT. Refuses to start on an invalid config, "
        "printing every problem. Under systemd it reports READY once the broker is connected.",
    )
    run.add_argument(
        "-c",
        "--config",
        type=Path,
        default=_default_config(),
        help="config file (default: $LANE_AGENT_CONFIG or %(default)s)",
    )
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check-config",
        help="validate a config file and print every problem with its key path",
        description="Exit 0 and a summary when FILE is valid; exit 2 listing every problem "
        "(e.g. 'mqtt.port: must be 1..65535') when it is not.",
    )
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(func=cmd_check_config)

    init = sub.add_parser(
        "init",
        help="print a commented first config for the scanners and readers attached",
        description="Find the attached scanners and NFC readers (as `diag devices` does) and "
        "print a commented config with a device table for each: ones that may not be scanners "
        "(keyboards, other serial devices) commented out. It passes check-config as printed; "
        "edit the lines marked EDIT (lane ids, broker).",
    )
    init.add_argument(
        "-o", "--output", type=Path, help="write this file instead of stdout (never overwrites)"
    )
    init.add_argument(
        "--no-devices",
        action="store_true",
        help="do not look for devices: the template with commented examples",
    )
    init.set_defaults(func=cmd_init)

    parse = sub.add_parser(
        "parse",
        help="normalise raw scans from stdin, one JSON line each",
        description="Read one raw scan per line from stdin (backslash escapes \\r \\n \\t \\xHH "
        "\\\\ allowed, e.g. \\x1d for the GS1 separator) and print one JSON object per line with "
        "kind, value, symbology, valid, error (and ais for GS1).",
    )
    parse.add_argument("--symbology", help="hint as a driver would give it (keyed, nfc, ean13...)")
    parse.add_argument("--config", type=Path, help="use this config's [normaliser] rules")
    parse.add_argument("--strict", action="store_true", help="exit 1 if any line is invalid")
    parse.set_defaults(func=cmd_parse)

    schema = sub.add_parser(
        "schema",
        help="print the JSON Schemas of the MQTT contract",
        description="Print JSON Schemas generated from the contract's pydantic models: all of "
        "them, or the one named (see --list).",
    )
    schema.add_argument("name", nargs="?", help="e.g. topic:scan, request:gift.redeem")
    schema.add_argument("--list", action="store_true", help="list schema names")
    schema.set_defaults(func=cmd_schema)

    diag = sub.add_parser(
        "diag",
        help="technician diagnostics: devices, monitor, health, providers, bundle",
        description="Diagnostics for a lane where a device does nothing. Stop the daemon first "
        "for `monitor` (it grabs the device): `systemctl stop lane-agent`.",
    )
    diag_sub = diag.add_subparsers(dest="diag", metavar="WHAT", required=True)
    config_help = "config file (default: $LANE_AGENT_CONFIG or %(default)s)"

    def diag_parser(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        p = diag_sub.add_parser(name, help=help_text, description=description)
        p.add_argument("-c", "--config", type=Path, default=_default_config(), help=config_help)
        p.set_defaults(func=cmd_diag)
        return p

    devices = diag_parser(
        "devices",
        "list input devices, serial ports, USB devices and NFC readers",
        "List every input device, serial port and USB device (marking HID-POS scanners and "
        "NFC readers), which config entry claims each, and for a device that cannot be opened "
        "the reason and the exact fix. Exit 1 when a configured device is missing or unusable.",
    )
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    monitor = diag_parser(
        "monitor",
        "show what a configured device sends, live",
        "Run one configured device's driver and print every scan with its timing and what the "
        "normaliser makes of it; with --keys also every key event of a keyboard-wedge scanner, "
        "so a wrong layout or a missing Enter suffix shows at once.",
    )
    monitor.add_argument("device", help="device id from the config, e.g. scanner1")
    monitor.add_argument("--keys", action="store_true", help="print every key event (evdev)")
    monitor.add_argument(
        "--no-grab",
        action="store_true",
        help="do not grab the device (keys also reach the console)",
    )
    diag_parser(
        "health",
        "check each device, the broker and each provider",
        "Run the internal and external health check of every configured device, connect to the "
        "broker and check each configured provider. Exit 1 if anything fails.",
    )
    diag_parser(
        "providers",
        "try every endpoint each configured provider uses",
        "Call each endpoint of each configured provider once with a request that names nothing "
        "(an empty body, a made-up reference), so nothing moves, and print what answered: a "
        "wrong path shows as 'no such endpoint', a wrong key as refused. Exit 1 if any fails.",
    )
    bundle = diag_parser(
        "bundle",
        "write one archive for support",
        "Write a .tar.gz with the config (secrets redacted), versions, the device list, health "
        "checks and recent logs (journalctl, dmesg).",
    )
    bundle.add_argument("-o", "--output", type=Path, default=Path("."), help="file or directory")

    demo = sub.add_parser(
        "demo",
        help="run a self-contained demo: broker, agent, sandbox ledger, display page, MQTT view",
        description="Start a broker on a free local port (mosquitto if installed, else an embedded "
        "one), the agent with the sandbox ledger and its demo gifts, the lane display page on a "
        "local web server (its address is printed), and a live view of the MQTT traffic. Type a "
        "code to scan it; type 'help' for the redeem/reverse commands.",
    )
    demo.add_argument(
        "--dir", type=Path, default=Path(".demo"), help="state directory (default %(default)s)"
    )
    demo.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    demo.add_argument(
        "--ws-port",
        type=int,
        default=0,
        help="broker websocket port, for the display page (default: a free one)",
    )
    demo.add_argument(
        "--web-port", type=int, default=0, help="display page's web port (default: a free one)"
    )
    demo.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="auto: mosquitto if installed, else the embedded amqtt broker (default %(default)s)",
    )
    demo.set_defaults(func=cmd_demo)

    outbox = sub.add_parser(
        "outbox",
        help="list, retry or drop the work closed orders still owe (commits, captures...)",
        description="After order.paid or order.void the agent owes providers some calls (loyalty "
        "commit and check-in, coupon capture, releases, reversals). It retries them until done; "
        "work that failed for good or past its deadline is dead-lettered. This lists that work "
        "and lets a person retry or drop an entry.",
    )
    outbox.add_argument("--config", type=Path, default=_default_config(), help="config file")
    outbox_sub = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = outbox_sub.add_parser("list", help="entries not done yet (pending and dead)")
    listing.add_argument("--all", action="store_true", help="also the entries already done")
    listing.add_argument("--pending", action="store_true", help="only entries still retried")
    retry = outbox_sub.add_parser("retry", help="try an entry again now (also a dead one)")
    retry.add_argument("id", type=int)
    drop = outbox_sub.add_parser("drop", help="give an entry up for good (asks first)")
    drop.add_argument("id", type=int)
    drop.add_argument("--yes", action="store_true", help="do not ask")
    outbox.set_defaults(func=cmd_outbox)

    notify = sub.add_parser(
        "kseries-notify",
        help="receive K-Series receipt notifications centrally and settle the lanes' card payments",
        description="On the fleet's central host: accept Lightspeed K-Series real-time "
        "notifications (HTTP Basic auth, as registered with K-Series) and send the lane that "
        "took a card payment on a finalized receipt order.paid, on a voided one order.void or "
        "order.refund, over the central broker (docs/providers/kseries.md).",
    )
    notify.add_argument("-c", "--config", type=Path, required=True, help="kseries-notify.toml")
    notify.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default="info"
    )
    notify.set_defaults(func=cmd_kseries_notify)

    add_fleet_parser(sub)
    return parser


FLEET_EPILOG = """\
examples:
  lane-agent fleet --config central.toml ls --json
  lane-agent fleet --config central.toml apply lane.toml --store s1 --canary 1
  lane-agent fleet --config central.toml bundle s1/l1 -o /tmp
  lane-agent fleet --config central.toml log-level s1/l1 debug 30

central.toml has the [mqtt] table a lane has (host, port, username, password_file, [mqtt.tls]),
for the central broker and the fleet identity (docs/fleet.md: fleet-ops).
"""


def add_fleet_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = sub.add_parser(
        "fleet",
        help="the operator's view of every lane through the central broker, and admin ops",
        description="List every lane the store bridges carry to the central broker (from their "
        "retained info and state), roll a config out with canaries and automatic rollback, "
        "collect a support bundle, restart a lane or raise its log level for a while. Works "
        "over MQTT only: the lanes' admin.* ops, which only the fleet identity may send.",
        epilog=FLEET_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet.add_argument(
        "-c", "--config", type=Path, required=True, help="a TOML file with the [mqtt] table"
    )
    fleet.set_defaults(func=cmd_fleet)
    what = fleet.add_subparsers(dest="fleet", metavar="COMMAND", required=True)
    ls = what.add_parser(
        "ls",
        help="every lane: state and since when, version, config hash, outbox, health",
        description="One line per lane (or JSON lines with --json: store, lane, state, since, "
        "version, config_hash, health, outbox_pending, outbox_dead, uptime_s, bridge). "
        "A lane whose store bridge is down shows 'unreachable': its last state is stale.",
    )
    ls.add_argument("--store", help="only this store")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument(
        "--wait",
        type=float,
        default=1.0,
        help="stop after this many seconds without a new message (default %(default)s)",
    )
    apply = what.add_parser(
        "apply",
        help="apply a config to a store's lanes, canaries first, stop on the first failure",
        description="Send CONFIG (a lane config; without a [lane] table each lane keeps its own) "
        "to each lane: the lane checks it as check-config does, restarts with it and keeps it "
        "once back online and healthy, else restores its previous config by itself. Lanes go "
        "one at a time, the --canary first; a line per lane; the first lane refused, rolled "
        "back or not back in time stops the rollout (exit 1).",
    )
    apply.add_argument("file", type=Path, metavar="CONFIG")
    apply.add_argument("--store", required=True)
    apply.add_argument("--lanes", help="a,b,c: these lanes in this order (default: all seen)")
    apply.add_argument(
        "--canary", type=int, default=1, help="lanes first on their own (default %(default)s)"
    )
    apply.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a lane has to come back online before it rolls back (default %(default)s)",
    )
    bundle = what.add_parser(
        "bundle",
        help="collect a lane's support bundle (redacted) into a file",
        description="The archive `lane-agent diag bundle` writes on the lane, sent in chunks.",
    )
    bundle.add_argument("lane", metavar="STORE/LANE")
    bundle.add_argument("-o", "--output", type=Path, default=Path("."), help="file or directory")
    restart = what.add_parser(
        "restart",
        help="restart a lane's agent and wait until it is online again",
        description="The agent answers, exits, and systemd starts it again.",
    )
    restart.add_argument("lane", metavar="STORE/LANE")
    level = what.add_parser(
        "log-level",
        help="set a lane's log level for some minutes",
        description="The level reverts to the config's by itself after MINUTES.",
    )
    level.add_argument("lane", metavar="STORE/LANE")
    level.add_argument("level", choices=["debug", "info", "warning", "error"])
    level.add_argument("minutes", type=int)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

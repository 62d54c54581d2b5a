"""Config validation: every problem reported with its key path; secrets only from files."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from agent import registry
from agent.app import run_daemon
from agent.cli import main
from agent.config import Config, ConfigError, check_state_dir, load_config, parse_config
from agent.providers.settings import SandboxSettings
from agent.secrets import read_secret

MINIMAL = """\
[lane]
store = "s1"
lane = "l1"
[mqtt]
host = "127.0.0.1"
port = 1883
[providers.sandbox]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lane.toml"
    path.write_text(text)
    return path


def load_config_text(text: str) -> Config:
    return parse_config(tomllib.loads(text))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value.problems


def test_the_documented_minimal_config_works_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.base_topic == "lane-agent/s1/l1"
    assert config.configured_providers() == ["sandbox"]
    sandbox = config.provider_settings("sandbox")
    assert isinstance(sandbox, SandboxSettings) and sandbox.demo_data


def test_port_out_of_range_is_reported_with_its_key_path(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL.replace("1883", "70000")) == ["mqtt.port: must be 1..65535"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("1883", "0").replace('lane = "l1"', 'lane = "l/1"') + "[mqtt2]\n"
    found = problems(tmp_path, text)
    assert "mqtt.port: must be 1..65535" in found
    assert any(p.startswith("lane.lane: must be") for p in found)
    assert "mqtt2: unknown key (did you mean 'mqtt'?)" in found
    assert len(found) == 3


def test_missing_section_and_typo_hint(tmp_path: Path) -> None:
    found = problems(tmp_path, '[mqtt]\nhots = "x"\n')
    assert "lane: required key is missing" in found
    assert "mqtt.hots: unknown key (did you mean 'host'?)" in found


def test_inline_secret_is_refused_with_where_to_put_it(tmp_path: Path) -> None:
    text = MINIMAL.replace("port = 1883", 'port = 1883\nusername = "lane"\npassword = "hunter2"')
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert found[0].startswith("mqtt.password: secrets are not accepted")
    assert "password_file" in found[0] and "hunter2" not in found[0]


def test_unreadable_secret_file_is_a_config_problem(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "port = 1883", f'port = 1883\nusername = "lane"\npassword_file = "{tmp_path}/nope"'
    )
    assert problems(tmp_path, text) == [f"mqtt.password_file: {tmp_path}/nope: no such file"]


def test_device_errors_name_the_device_not_the_union_tag(tmp_path: Path) -> None:
    text = MINIMAL + '[devices.tech]\ntype = "fifo"\npaht = "/tmp/x"\n'
    found = problems(tmp_path, text)
    assert "devices.tech.path: required key is missing" in found
    assert "devices.tech.paht: unknown key (did you mean 'path'?)" in found


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    found = problems(tmp_path, "[lane\nstore = 1\n")
    assert len(found) == 1 and "invalid TOML" in found[0] and "line 1" in found[0]


def test_flow_must_name_a_configured_provider(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[flows]\ngift = "giftlocal"\n')
    assert found == [
        "flows.gift: provider 'giftlocal' is not configured under [providers] (sandbox)"
    ]


def test_secret_from_file_and_from_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    secret = read_secret(tmp_path / "pw", "mqtt_password")
    assert secret is not None and secret.reveal() == "s3cret"
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    from_creds = read_secret(None, "mqtt_password")
    assert from_creds is not None and from_creds.reveal() == "from-systemd"
    assert read_secret(None, "other") is None


def test_check_config_cli_exit_codes_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, MINIMAL)
    assert main(["check-config", str(good)]) == 0
    assert "base topic: lane-agent/s1/l1" in capsys.readouterr().out
    good.write_text(MINIMAL.replace("1883", "99999"))
    assert main(["check-config", str(good)]) == 2
    err = capsys.readouterr().err
    assert "mqtt.port: must be 1..65535" in err


def test_run_refuses_to_start_on_a_bad_config_with_the_same_messages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path, MINIMAL.replace("1883", "99999"))
    assert main(["run", "--config", str(bad)]) == 2
    assert "mqtt.port: must be 1..65535" in capsys.readouterr().err


def test_default_routes_follow_the_configured_flows(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.flow_provider("gift") == "sandbox"
    assert config.kind_routes() == {"gift_voucher_code": "gift", "gift_voucher_token": "gift"}


def test_routes_override_defaults_and_none_switches_a_kind_off(tmp_path: Path) -> None:
    text = MINIMAL + '[flows.routes]\ngift_voucher_token = "none"\n'
    config = load_config(write(tmp_path, text))
    assert config.kind_routes() == {"gift_voucher_code": "gift"}


def test_route_to_a_flow_without_provider_is_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[flows.routes]\nphone = "coupons"\n')
    assert found == ["flows.routes.phone: flow 'coupons' has no provider (set flows.coupons)"]
    unknown = problems(tmp_path, MINIMAL + '[flows.routes]\nemail = "wallet"\n')
    assert unknown == [
        "flows.routes.email: Input should be 'gift', 'card', 'coupons', 'loyalty' or 'none'"
    ]


def test_provider_that_cannot_run_the_flow_is_a_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '[flows]\nloyalty = "sandbox"\n')
    assert found == ["flows.loyalty: provider 'sandbox' cannot run it (use one of: punchh)"]


# Every provider with keys, its table's other required settings, and the key file settings.
KEYED = [(spec.name, spec.keys) for spec in registry.PROVIDERS if spec.keys]
REQUIRED = {"kseries": 'payment_method_code = "GC"\n'}


def keyed_config(tmp_path: Path, name: str, keys: dict[str, Path]) -> str:
    files = "".join(f'{setting} = "{path}"\n' for setting, path in keys.items())
    table = f'[providers.{name}]\nbase_url = "http://127.0.0.1:9"\n{REQUIRED.get(name, "")}'
    return MINIMAL.replace("[providers.sandbox]\n", table + files)


@pytest.mark.parametrize(("name", "keys"), KEYED)
def test_check_config_reads_every_provider_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    keys: tuple[str, ...],
) -> None:
    """A key file that is missing, unreadable or empty is named by check-config, and `run`
    refuses with the same line, exit 2 (the unit does not restart on it), no traceback."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    good = {setting: tmp_path / f"{setting}.key" for setting in keys}
    for path in good.values():
        path.write_text("k3y\n")
    config = write(tmp_path, keyed_config(tmp_path, name, good))
    assert main(["check-config", str(config)]) == 0
    capsys.readouterr()
    bad_key = keys[-1]
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    for broken, why in [
        (tmp_path / "absent.key", "No such file"),
        (tmp_path, "Is a directory"),
        (empty, "the file is empty"),
    ]:
        write(tmp_path, keyed_config(tmp_path, name, {**good, bad_key: broken}))
        assert main(["check-config", str(config)]) == 2
        err = capsys.readouterr().err
        assert f"providers.{name}.{bad_key}: {broken}: {why}" in err
        assert main(["run", "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert f"providers.{name}.{bad_key}: {broken}: {why}" in err
        assert "Traceback" not in err


@pytest.mark.parametrize(("name", "keys"), KEYED)
def test_a_key_left_out_names_its_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, keys: tuple[str, ...]
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "none"))
    found = problems(tmp_path, keyed_config(tmp_path, name, {}))
    assert found == [
        f"providers.{name}.{setting}: key missing: set it to the key's file, or "
        f"LoadCredential={name}_{setting.removesuffix('_file')}"
        for setting in keys
    ]


def test_the_registry_is_the_only_list_of_providers_and_flows() -> None:
    """Config tables, flow keys and check-config's choices all come from agent/registry.py."""
    config = load_config_text(MINIMAL)
    assert [name for name, _ in config.providers] == [p.name for p in registry.PROVIDERS]
    flow_keys = [k for k in type(config.flows).model_fields if k != "routes"]
    assert flow_keys == list(registry.FLOW_NAMES) == [f.name for f in registry.FLOWS]
    for spec in registry.PROVIDERS:
        assert spec.flow in registry.FLOW_NAMES
        assert spec.name in registry.able(spec.flow)


def test_port_is_a_toml_integer_never_a_string(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL.replace("1883", '"1883"')) == [
        "mqtt.port: Input should be a valid integer"
    ]


def test_a_password_file_that_is_a_directory_is_a_config_problem(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "port = 1883", f'port = 1883\nusername = "lane"\npassword_file = "{tmp_path}"'
    )
    assert problems(tmp_path, text) == [f"mqtt.password_file: {tmp_path}: a directory, not a file"]


def test_a_state_dir_that_is_a_file_stops_check_config_and_run_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a traceback and exit 1, which systemd restarts in a loop: exit 2, which it does not."""
    state = tmp_path / "state"
    state.write_text("")
    config = write(tmp_path, MINIMAL + f'[state]\ndir = "{state}"\n')
    for command in (["check-config", str(config)], ["run", "--config", str(config)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"  state.dir: {state}: not a directory\n" in err and "Traceback" not in err


async def test_state_the_agent_cannot_open_at_start_is_one_line_and_exit_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What breaks between the check and the start (here a database that is a directory) is
    still one line and exit 2."""
    state = tmp_path / "state"
    (state / "orders.sqlite").mkdir(parents=True)
    config = load_config(write(tmp_path, MINIMAL + f'[state]\ndir = "{state}"\n'))
    assert check_state_dir(config) == []
    assert await run_daemon(config) == 2
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line == (f"cannot start: the agent's records in {state}: unable to open database file")

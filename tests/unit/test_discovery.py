"""Pure parts of the diagnostics and device selection (the hardware tier covers the rest)."""

from __future__ import annotations

from pathlib import Path

from agent.diag import redact
from drivers.inotify import DirectoryWatch
from drivers.keyboard import Node, physical_device, select_nodes
from drivers.settings import KeyboardSettings


def nodes() -> list[Node]:
    return [
        Node("/dev/input/event3", "Honeywell Scanner", "0c2e:0b61", "usb-0000:00:14.0-2/input0"),
        Node("/dev/input/event4", "Honeywell Consumer", "0c2e:0b61", "usb-0000:00:14.0-2/input1"),
        Node("/dev/input/event5", "AT Keyboard", "0001:0001", "isa0060/serio0/input0"),
    ]


def test_select_by_usb_id_takes_every_node_of_the_device() -> None:
    chosen = select_nodes(KeyboardSettings(type="evdev", usb_id="0C2E:0B61"), nodes())
    assert [n.path for n in chosen] == ["/dev/input/event3", "/dev/input/event4"]


def test_select_by_name_pattern() -> None:
    chosen = select_nodes(KeyboardSettings(type="evdev", name="*Keyboard*"), nodes())
    assert [n.path for n in chosen] == ["/dev/input/event5"]


def test_select_by_path_brings_sibling_nodes(tmp_path: Path) -> None:
    link = tmp_path / "usb-Honeywell-event-kbd"
    link.symlink_to("/dev/input/event3")
    # The link target does not exist on this host: resolving it strictly fails -> nothing selected.
    assert select_nodes(KeyboardSettings(type="evdev", path=link), nodes()) == []
    assert physical_device("usb-0000:00:14.0-2/input1") == "usb-0000:00:14.0-2"


def test_redact_hides_secret_values_but_keeps_file_paths() -> None:
    text = 'password = "hunter2"\npassword_file = "/etc/pw"\napi_key="k"\nport = 1883'
    assert redact(text).splitlines() == [
        'password = "<redacted>"',
        'password_file = "/etc/pw"',
        'api_key="<redacted>"',
        "port = 1883",
    ]


async def test_directory_watch_sees_nodes_appear_and_its_own_directory_created(
    tmp_path: Path,
) -> None:
    watched = tmp_path / "by-id"
    async with DirectoryWatch(watched) as watch:
        watched.mkdir()
        assert "by-id" in await watch.changed()
        (watched / "usb-scanner").touch()
        assert "usb-scanner" in await watch.changed()

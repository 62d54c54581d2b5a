"""The .deb as a lane gets it: built once per session by scripts/build-deb (what `make deb` runs,
about a minute), then read with dpkg-deb and lintian, unpacked into a throwaway root and run.

The unpacked tree is run where it will live: in a private mount namespace, a tmpfs over /opt
carries the package's /opt/lane-agent, so /usr/bin/lane-agent -> /opt/lane-agent/bin/lane-agent
-> Debian's python3.11 is the real chain, and nothing on this machine changes. The maintainer
scripts run the same way, with tmpfs over /etc, /var/lib and /run, to show that remove keeps the
lane's state and purge deletes it. Booting the unit under systemd is the VM tier's job
(docs/packaging.md).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
EXAMPLE = "usr/share/doc/lane-agent/examples/lane-agent.example.toml"
# What the package's own Python would see if this test leaked its environment into it.
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # cwd /: `python -c` puts the working directory first on sys.path, and this checkout's
    # agent/ must not stand in for the packaged one.
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, env=CLEAN_ENV, cwd="/"
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{shlex.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


@dataclass(frozen=True)
class Built:
    deb: Path
    root: Path  # dpkg-deb -x of it
    control: Path  # dpkg-deb -e of it
    out: Path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    for tool in ("dpkg-buildpackage", "dh_virtualenv", "lintian", "help2man"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/system-deps.sh deb (make test does)")
    out = tmp_path_factory.mktemp("deb")
    # `make test` builds the package once for this module and the service tier (LANE_AGENT_DEB).
    prebuilt = os.environ.get("LANE_AGENT_DEB")
    if prebuilt:
        deb = Path(prebuilt).resolve()  # the package commands run from /
        assert deb.is_file(), f"LANE_AGENT_DEB={prebuilt} does not exist"
    else:
        result = subprocess.run(
            [str(REPO / "scripts" / "build-deb"), "--no-lintian", "--out", str(out / "build")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        deb = Path(result.stdout.strip().splitlines()[-1])
    root, control = out / "root", out / "control"
    _run("dpkg-deb", "-x", str(deb), str(root))
    _run("dpkg-deb", "-e", str(deb), str(control))
    return Built(deb, root, control, out)


def test_file_name_says_version_and_arch(built: Built) -> None:
    arch = _run("dpkg", "--print-architecture").stdout.strip()
    assert built.deb.name == f"lane-agent_{VERSION}_{arch}.deb"
    fields = _run("dpkg-deb", "-f", str(built.deb), "Package", "Version", "Architecture").stdout
    assert fields.split("\n")[:3] == [
        "Package: lane-agent",
        f"Version: {VERSION}",
        f"Architecture: {arch}",
    ]


def test_depends_on_what_the_bundle_does_not_carry(built: Built) -> None:
    depends = _run("dpkg-deb", "-f", str(built.deb), "Depends").stdout
    # The venv runs on Debian's interpreter; pyusb loads libusb with ctypes (no shlibs entry).
    for name in ("python3.11", "libusb-1.0-0", "udev", "libc6"):
        assert re.search(rf"(^|, ){re.escape(name)}\b", depends), depends


def test_contents(built: Built) -> None:
    listing = _run("dpkg-deb", "-c", str(built.deb)).stdout
    paths = {line.split()[5].removeprefix("./").rstrip("/") for line in listing.splitlines()}
    for path in (
        "usr/bin/lane-agent",
        "opt/lane-agent/bin/lane-agent",
        "opt/lane-agent/pyvenv.cfg",
        "lib/systemd/system/lane-agent.service",
        "lib/udev/rules.d/70-lane-agent.rules",
        "usr/lib/sysusers.d/lane-agent.conf",
        "etc/modprobe.d/lane-agent.conf",
        "etc/lane-agent",
        EXAMPLE,
        "usr/share/doc/lane-agent/examples/71-lane-agent-local.rules",
        "usr/share/doc/lane-agent/copyright",
        "usr/share/man/man1/lane-agent.1.gz",
        "usr/share/lintian/overrides/lane-agent",
    ):
        assert path in paths, f"{path} is not in the package"
    assert os.readlink(built.root / "usr/bin/lane-agent") == "/opt/lane-agent/bin/lane-agent"
    assert os.readlink(built.root / "opt/lane-agent/bin/python3.11") == "/usr/bin/python3.11"
    # The packaged unit, rules and example are the checked-in ones, byte for byte.
    for packaged, source in (
        ("lib/systemd/system/lane-agent.service", "systemd/lane-agent.service"),
        ("lib/udev/rules.d/70-lane-agent.rules", "systemd/70-lane-agent.rules"),
        (EXAMPLE, "systemd/lane-agent.example.toml"),
    ):
        assert (built.root / packaged).read_bytes() == (REPO / source).read_bytes(), packaged
    # Build tools and bytecode stay out: postinst compiles on the lane, against its paths.
    assert not [p for p in paths if "__pycache__" in p or p.endswith(".pyc")]
    assert not [p for p in paths if re.search(r"site-packages/(pip|setuptools)\b", p)]
    # Nothing names the machine or directory it was built in.
    leaks = _run("grep", "-rlI", str(built.out), str(built.root), check=False).stdout
    assert leaks == "", leaks


def test_conffiles_and_the_opt_in_blacklist(built: Built) -> None:
    conffiles = (built.control / "conffiles").read_text().split()
    assert conffiles == ["/etc/modprobe.d/lane-agent.conf"]
    blacklist = (built.root / "etc/modprobe.d/lane-agent.conf").read_text()
    assert "#blacklist pn533_usb" in blacklist
    active = [line for line in blacklist.splitlines() if line.strip() and not line.startswith("#")]
    assert active == [], "the blacklist is opt-in: nothing may be active as shipped"


def test_maintainer_scripts_parse_and_never_block_on_the_broker(built: Built) -> None:
    for script in ("preinst", "postinst", "prerm", "postrm"):
        path = built.control / script
        if path.exists():
            _run("sh", "-n", str(path))
    postinst = (built.control / "postinst").read_text()
    # READY waits for the broker: a blocking start would hold dpkg up to TimeoutStartSec=.
    assert "deb-systemd-invoke" not in postinst
    calls = [
        line
        for line in postinst.splitlines()
        if re.match(r"\s*systemctl\b", line) and "daemon-reload" not in line
    ]
    assert calls and all("--no-block" in line for line in calls), calls
    # Removing the package stops the agent first (debhelper's stop goes with --no-start).
    prerm = (built.control / "prerm").read_text()
    assert re.search(r'"\$1" = remove .*\n.*deb-systemd-invoke stop lane-agent.service', prerm)
    # The unit waits for a config instead of failing without one.
    unit = (built.root / "lib/systemd/system/lane-agent.service").read_text()
    assert "ConditionPathExists=/etc/lane-agent/lane-agent.toml" in unit


def test_lintian_is_clean_or_every_override_says_why(built: Built) -> None:
    result = _run("lintian", "--fail-on", "error,warning", str(built.deb), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # An override without a comment above it is a silenced warning, not a justified one.
    lines = (REPO / "debian/lane-agent.lintian-overrides").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert i > 0 and lines[i - 1].strip(), f"override without a reason: {line}"


def _in_namespace(built: Built, script: str) -> subprocess.CompletedProcess[str]:
    """Run `script` with the package's /opt/lane-agent in place and this host's /opt hidden."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private mount namespace (make test runs as root)")
    setup = (
        "set -e; mount -t tmpfs tmpfs /opt; mkdir /opt/lane-agent; "
        f"mount --bind {shlex.quote(str(built.root / 'opt/lane-agent'))} /opt/lane-agent; "
    )
    return _run(
        "unshare", "--mount", "--propagation", "private", "sh", "-c", setup + script, check=False
    )


def test_installed_command_runs_from_the_package(built: Built) -> None:
    bin_ = shlex.quote(str(built.root / "usr/bin/lane-agent"))
    example = shlex.quote(str(built.root / EXAMPLE))
    probe = (
        "import agent, pydantic, evdev; print(agent.__file__); print(pydantic.VERSION); "
        "print(evdev.__file__)"
    )
    result = _in_namespace(
        built,
        f"{bin_} --version; {bin_} --help >/dev/null; {bin_} check-config {example}; "
        f"{bin_} init --no-devices | cmp - {example}; /opt/lane-agent/bin/python -c '{probe}'",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout.splitlines()
    assert out[0] == f"lane-agent {VERSION}"
    assert f"{example.strip(chr(39))}: OK" in out
    site = "/opt/lane-agent/lib/python3.11/site-packages/"
    pinned = re.search(r"^pydantic==(\S+)", (REPO / "debian/requirements.txt").read_text(), re.M)
    assert pinned is not None
    # The package's own modules, not this checkout's or Debian's python3-* ones.
    assert out[-3:] == [f"{site}agent/__init__.py", pinned.group(1), f"{site}evdev/__init__.py"]


def test_maintainer_scripts_keep_state_on_remove_and_delete_it_on_purge(built: Built) -> None:
    ctl = built.control
    script = f"""
    mount -t tmpfs tmpfs /etc; mount -t tmpfs tmpfs /var/lib; mount -t tmpfs tmpfs /run
    mount --bind {built.root}/usr/lib/sysusers.d /usr/lib/sysusers.d
    mkdir -p /var/lib/private/lane-agent /etc/lane-agent
    echo data >/var/lib/private/lane-agent/orders.sqlite
    ln -s private/lane-agent /var/lib/lane-agent
    sh {ctl}/postinst configure
    ls /opt/lane-agent/lib/python3.11/site-packages/agent/__pycache__ | grep -q 'cli.*pyc'
    grep -E '^(input|dialout|plugdev):' /etc/group | cut -d: -f1 | sort | tr '\\n' ' '; echo
    echo 'lane = "l1"' >/etc/lane-agent/lane-agent.toml
    sh {ctl}/prerm remove
    ! find /opt/lane-agent -name __pycache__ | grep -q .
    sh {ctl}/postrm remove
    test -f /var/lib/lane-agent/orders.sqlite && test -f /etc/lane-agent/lane-agent.toml
    echo kept after remove
    echo secret >/etc/lane-agent/mqtt_password
    sh {ctl}/postrm purge
    test ! -e /var/lib/lane-agent && test ! -e /var/lib/private/lane-agent
    test ! -e /etc/lane-agent/lane-agent.toml && test -f /etc/lane-agent/mqtt_password
    echo purged
    """
    result = _in_namespace(built, script)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no /etc/lane-agent/lane-agent.toml yet" in result.stdout
    # systemd-sysusers made the device groups the unit needs, on a system that had none.
    assert "dialout input plugdev \n" in result.stdout
    assert "kept after remove" in result.stdout and "purged" in result.stdout
    assert "left /etc/lane-agent in place" in result.stderr

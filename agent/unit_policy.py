"""What the installed systemd unit lets the service open, for `lane-agent diag devices`.

A technician runs diag as root, where every node opens; the service runs as a dynamic user with
`SupplementaryGroups=` and `DevicePolicy=closed` + `DeviceAllow=char-<class>`. A device that
opens for root can still be refused to the service, by its group and mode (a udev rule not
applied) or by its class (a device kind the unit does not list). This reads the unit's effective
settings from systemd and judges each node by both, so "found, but the service cannot open it"
shows at the lane instead of as silence.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

UNIT = "lane-agent.service"
_PROPERTIES = (
    "LoadState",
    "DevicePolicy",
    "DeviceAllow",
    "SupplementaryGroups",
    "User",
    "MainPID",
)


@dataclass(frozen=True, slots=True)
class UnitPolicy:
    """The unit's device policy: groups it runs with and `char-<class>` → allowed "rwm"."""

    groups: frozenset[str]
    closed: bool  # DevicePolicy=closed or strict: only DeviceAllow= (and pseudo devices) open
    allow: dict[str, str]
    user: str | None = None  # a fixed User= owning nodes; None for DynamicUser=
    main_pid: int | None = None  # the running agent, if the service is running


def parse_show(text: str) -> UnitPolicy | None:
    """Parse `systemctl show -p ...` output; None when the unit is not installed."""
    props: dict[str, list[str]] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            props.setdefault(name, []).append(value)
    if props.get("LoadState", [""])[0] != "loaded":
        return None
    allow: dict[str, str] = {}
    for entry in props.get("DeviceAllow", []):
        spec, _, perms = entry.strip().partition(" ")
        if spec:
            allow[spec] = allow.get(spec, "") + (perms.strip() or "rwm")
    groups = frozenset(g for v in props.get("SupplementaryGroups", []) for g in v.split())
    policy = props.get("DevicePolicy", ["auto"])[0]
    user = props.get("User", [""])[0] or None
    pid = props.get("MainPID", ["0"])[0]
    main_pid = int(pid) if pid.isdigit() and int(pid) > 0 else None
    return UnitPolicy(groups, policy in ("closed", "strict"), allow, user, main_pid)


def installed_policy(unit: str = UNIT) -> UnitPolicy | None:
    """The unit's policy from systemd, or None where there is no systemd or no such unit."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None
    args = [systemctl, "show", unit, *(f"--property={p}" for p in _PROPERTIES)]
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_show(result.stdout) if result.returncode == 0 else None


def char_classes(major: int, proc_devices: Path = Path("/proc/devices")) -> list[str]:
    """The kernel's names for a character major (`/proc/devices`), as `char-<name>` uses them.
    A major can have several (4 is `/dev/vc/0`, `tty` and `ttyS`)."""
    try:
        lines = proc_devices.read_text().splitlines()
    except OSError:
        return []
    names: list[str] = []
    in_char = False
    for line in lines:
        if line.strip() == "Character devices:":
            in_char = True
        elif line.strip().endswith("devices:"):
            in_char = False
        elif in_char:
            number, _, name = line.strip().partition(" ")
            if number.isdigit() and int(number) == major:
                names.append(name.strip())
    return names


def judge(
    policy: UnitPolicy,
    *,
    mode: int,
    group: str,
    owner: str | None,
    classes: list[str],
    write: bool,
) -> str | None:
    """Why the service may not open a node with this mode, group and (any of its major's)
    classes; None if it may."""
    want = "rw" if write else "r"
    if policy.closed:
        specs = [f"char-{cls}" for cls in classes]
        if not any(all(p in policy.allow.get(spec, "") for p in want) for spec in specs):
            spec = specs[-1] if specs else "char-<class>"
            return (
                f"its device class {' / '.join(specs) or '(unknown)'} is not allowed {want} by "
                f"the unit's DeviceAllow=; add `DeviceAllow={spec} {want}` in a drop-in "
                f"(`systemctl edit {UNIT}`)"
            )
    bits = {"r": (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)}
    bits["w"] = (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH)
    for perm in want:
        by_owner = policy.user is not None and owner == policy.user and mode & bits[perm][0]
        by_group = group in policy.groups and mode & bits[perm][1]
        if not (by_owner or by_group or mode & bits[perm][2]):
            return (
                f"group '{group}' mode {mode & 0o777:o} gives the service no '{perm}' (it runs "
                f"with groups {', '.join(sorted(policy.groups)) or 'none'}): the udev rule "
                "that sets the group did not apply; see `udevadm test` for the device"
            )
    return None


def service_access(policy: UnitPolicy, path: str, *, write: bool) -> str:
    """One line for a technician: may the service open this node, and if not why."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"service: cannot tell ({exc.strerror})"
    if not stat.S_ISCHR(st.st_mode):
        return "service: not a character device"
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    owner = None
    if policy.user is not None:
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
    classes = char_classes(os.major(st.st_rdev))
    why = judge(policy, mode=st.st_mode, group=group, owner=owner, classes=classes, write=write)
    if why is None:
        allowed = [c for c in classes if f"char-{c}" in policy.allow] or classes
        return f"service {UNIT}: may open it (group {group}, class char-{allowed[0]})"
    return f"service {UNIT}: CANNOT open it: {why}"

"""Config rollout on the lane: `admin.config.apply` writes a new config and the agent restarts
with it; it becomes the last good config only once the agent is back online with it, and
otherwise the previous one is restored by whichever process finds out first.

The files live in `{state_dir}/fleet/` (systemd's StateDirectory=: /etc is read-only to the
agent's sandbox and owned by root):

- `lane-agent.toml`: the applied config. While it exists the agent runs it instead of the file
  given with --config (the *base*), and says so at start and in `{base}/info`.
- `last-good.toml`: a copy of the applied config once it came back online.
- `pending.json`: an apply waiting for the agent to come back online: its request id, the new and
  the previous hash, where the previous config is (`base` or `last-good.toml`), the deadline, and
  how often the agent was started with it.
- `last-apply.json`: how the last apply ended, for `{base}/info` and its event.

Who restores the previous config (no ExecStartPre= helper, no second process):

- the agent at start-up, finding a pending apply whose deadline passed, or that it was already
  started with once without coming online (a crash, a kill by the watchdog or TimeoutStartSec=);
- the agent at start-up, when the new config does not load or a provider or TLS file of it
  refuses to start, which would otherwise be exit 2, which systemd does not restart: it restores
  the previous config and exits with EXIT_RESTART, which systemd does restart;
- the running agent, when the deadline passes before it got online (a wrong broker address): it
  restores and exits with EXIT_RESTART.

Every file is written whole (a temporary file, fsync, rename, fsync of the directory), and the
marker before the config it protects, so a power cut at any moment leaves either the old config
or the new one with its marker.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from agent.config import Config, ConfigError, load_config
from agent.contract.admin import ApplyRecord, ConfigApplyResult
from agent.contract.base import utc_now

log = logging.getLogger(__name__)

# The agent's exit status for "start me again" (EX_TEMPFAIL of sysexits.h): after admin.restart,
# admin.config.apply, and a rollback. The unit's Restart=on-failure restarts on any non-zero
# status but RestartPreventExitStatus=2 (tests/test_systemd_unit.py checks it does on this one).
EXIT_RESTART = 75

FLEET_DIR = "fleet"


def config_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PendingApply(BaseModel):
    request_id: str
    config_hash: str
    previous_hash: str
    previous: Literal["base", "fleet"]
    deadline: datetime
    timeout: float
    starts: int = 0


class LastApply(BaseModel):
    record: ApplyRecord
    restored_hash: str | None = None
    announced: bool = False


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` or what it held before, whatever happens meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ConfigStore:
    """The config the agent runs (the base file, or one applied by the fleet) and the state of
    an apply."""

    def __init__(
        self, base: Path, state_dir: Path, *, now: Callable[[], datetime] = utc_now
    ) -> None:
        self.base = base
        self.dir = state_dir / FLEET_DIR
        self.active = self.dir / "lane-agent.toml"
        self.last_good = self.dir / "last-good.toml"
        self._pending = self.dir / "pending.json"
        self._last = self.dir / "last-apply.json"
        self._now = now

    @property
    def source(self) -> Literal["base", "fleet"]:
        return "fleet" if self.active.exists() else "base"

    @property
    def path(self) -> Path:
        return self.active if self.active.exists() else self.base

    def read(self) -> bytes:
        return self.path.read_bytes()

    def hash(self) -> str:
        return config_hash(self.read())

    def pending(self) -> PendingApply | None:
        try:
            return PendingApply.model_validate_json(self._pending.read_bytes())
        except FileNotFoundError:
            return None

    def last_apply(self) -> LastApply | None:
        try:
            return LastApply.model_validate_json(self._last.read_bytes())
        except FileNotFoundError:
            return None

    # --- applying -------------------------------------------------------------------------------

    def stage(self, text: str) -> Path:
        """The candidate, in a file of its own, for load_config to check as check-config does."""
        candidate = self.dir / "candidate.toml"
        write_atomic(candidate, text.encode())
        return candidate

    def apply(self, candidate: Path, request_id: str, timeout: float) -> ConfigApplyResult:
        """Put a checked candidate in place behind a pending marker; the caller restarts."""
        new_hash = config_hash(candidate.read_bytes())
        previous_hash = self.hash()
        if new_hash == previous_hash:
            candidate.unlink()
            return ConfigApplyResult(
                changed=False, config_hash=new_hash, previous_hash=previous_hash
            )
        previous = self.source
        if previous == "fleet":
            write_atomic(self.last_good, self.active.read_bytes())
        deadline = self._now() + timedelta(seconds=timeout)
        marker = PendingApply(
            request_id=request_id,
            config_hash=new_hash,
            previous_hash=previous_hash,
            previous=previous,
            deadline=deadline,
            timeout=timeout,
        )
        write_atomic(self._pending, marker.model_dump_json().encode())
        os.replace(candidate, self.active)
        _sync_dir(self.dir)
        log.warning(
            "config %s applied by request %s; restarting with it (previous %s, back by %s)",
            new_hash[:12],
            request_id,
            previous_hash[:12],
            deadline.isoformat(timespec="seconds"),
        )
        return ConfigApplyResult(
            changed=True, config_hash=new_hash, previous_hash=previous_hash, deadline=deadline
        )

    # --- after the restart ----------------------------------------------------------------------

    def check_at_start(self) -> None:
        """Restore the previous config when a pending one had its chance; count this start."""
        pending = self.pending()
        if pending is None:
            return
        if pending.starts >= 1:
            self.roll_back("the agent stopped before it came back online with it")
        elif self._now() >= pending.deadline:
            self.roll_back(f"not back online within {pending.timeout:g} s")
        else:
            counted = pending.model_copy(update={"starts": pending.starts + 1})
            write_atomic(self._pending, counted.model_dump_json().encode())

    def start(self) -> Config:
        """The config to run now, after the start-up check: the applied one, or the base."""
        self.check_at_start()
        if self.source == "base":
            return load_config(self.base)
        if self.pending() is None:
            log.warning(
                "running the config applied by the fleet, %s, not %s (remove it to go back)",
                self.active,
                self.base,
            )
            return load_config(self.active)
        try:
            return load_config(self.active)
        except ConfigError as exc:
            self.roll_back("the config does not load: " + "; ".join(exc.problems))
            return self.start()

    def confirm(self) -> ApplyRecord | None:
        """The agent is back online: the pending config becomes the last good one."""
        pending = self.pending()
        if pending is None:
            return None
        if pending.config_hash != self.hash():
            return self.roll_back("the apply was interrupted before the config was in place")
        if self.source == "fleet":
            write_atomic(self.last_good, self.active.read_bytes())
        record = ApplyRecord(
            request_id=pending.request_id,
            outcome="applied",
            config_hash=pending.config_hash,
            at=self._now(),
        )
        self._finish(LastApply(record=record))
        log.info("config %s is back online: kept as the last good one", pending.config_hash[:12])
        return record

    def roll_back(self, reason: str) -> ApplyRecord | None:
        """Restore the config that ran before the pending apply."""
        pending = self.pending()
        if pending is None:
            return None
        if pending.previous == "fleet":
            write_atomic(self.active, self.last_good.read_bytes())
        else:
            self.active.unlink(missing_ok=True)
            _sync_dir(self.dir)
        record = ApplyRecord(
            request_id=pending.request_id,
            outcome="rolled_back",
            config_hash=pending.config_hash,
            at=self._now(),
            reason=reason,
        )
        restored = self.hash()
        self._finish(LastApply(record=record, restored_hash=restored))
        log.error(
            "config %s of request %s rolled back to %s: %s",
            pending.config_hash[:12],
            pending.request_id,
            restored[:12],
            reason,
        )
        return record

    def _finish(self, last: LastApply) -> None:
        write_atomic(self._last, last.model_dump_json().encode())
        self._pending.unlink(missing_ok=True)
        _sync_dir(self.dir)

    def take_unannounced(self) -> LastApply | None:
        """The outcome of the last apply if its event has not gone out yet; marked as gone."""
        last = self.last_apply()
        if last is None or last.announced:
            return None
        announced = last.model_copy(update={"announced": True})
        write_atomic(self._last, announced.model_dump_json().encode())
        return last

"""A config applied by the fleet becomes the last good one only once the agent is back online
with it; every other way it can end restores the previous one (agent/rollout.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.config import ConfigError
from agent.contract import utc_now
from agent.rollout import ConfigStore, config_hash

BASE = '[lane]\nstore = "s1"\nlane = "l1"\n[providers.sandbox]\n'
NEW = BASE + '[log]\nlevel = "debug"\n'
NEWER = BASE + '[log]\nlevel = "warning"\n'


class Clock:
    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> ConfigStore:
    base = tmp_path / "lane.toml"
    base.write_text(BASE + f'[state]\ndir = "{tmp_path / "state"}"\n')
    return ConfigStore(base, tmp_path / "state", now=clock)


def applied(store: ConfigStore, text: str, request_id: str, timeout: float = 60) -> str:
    """Apply `text` as the admin op does after its checks; return the new hash."""
    result = store.apply(store.stage(text), request_id, timeout)
    assert result.changed
    return result.config_hash


def test_a_confirmed_config_runs_from_then_on_and_is_the_last_good(store: ConfigStore) -> None:
    base_hash = store.hash()
    new_hash = applied(store, NEW, "r1")
    assert store.source == "fleet" and store.hash() == new_hash
    pending = store.pending()
    assert pending is not None and pending.previous_hash == base_hash

    assert store.start().log.level == "debug"  # the restarted agent runs it
    record = store.confirm()
    assert record is not None and record.outcome == "applied"
    assert store.pending() is None
    assert store.last_good.read_text() == NEW
    assert store.start().log.level == "debug"  # and keeps running it


def test_the_same_config_again_changes_nothing(store: ConfigStore) -> None:
    applied(store, NEW, "r1")
    store.confirm()
    result = store.apply(store.stage(NEW), "r2", 60)
    assert not result.changed and store.pending() is None


def test_a_start_that_never_came_online_restores_the_base(store: ConfigStore) -> None:
    base_hash = store.hash()
    new_hash = applied(store, NEW, "r1")
    store.start()  # the first start with it: it crashed before getting online
    config = store.start()  # the second start restores
    assert store.source == "base" and store.hash() == base_hash
    assert config.log.level == "info"
    last = store.take_unannounced()
    assert last is not None and last.record.outcome == "rolled_back"
    assert last.record.config_hash == new_hash and last.restored_hash == base_hash
    assert store.take_unannounced() is None  # announced once


def test_a_passed_deadline_restores_the_last_good_fleet_config(
    store: ConfigStore, clock: Clock
) -> None:
    good = applied(store, NEW, "r1")
    store.start()
    store.confirm()
    applied(store, NEWER, "r2", timeout=30)
    clock.now += timedelta(seconds=31)
    assert store.start().log.level == "debug"
    assert store.hash() == good and store.source == "fleet"
    last = store.last_apply()
    assert last is not None and last.record.request_id == "r2"
    assert last.record.reason == "not back online within 30 s"


def test_a_config_that_does_not_load_is_rolled_back_at_start(store: ConfigStore) -> None:
    applied(store, BASE + "[mqtt]\nport = 0\n", "r1")
    assert store.start().mqtt.port == 1883
    last = store.last_apply()
    assert last is not None and last.record.outcome == "rolled_back"
    assert last.record.reason is not None and "mqtt.port: must be 1..65535" in last.record.reason


def test_without_a_pending_apply_a_broken_fleet_config_is_reported_not_replaced(
    store: ConfigStore,
) -> None:
    store.active.parent.mkdir(parents=True)
    store.active.write_text(BASE + "[mqtt]\nport = 0\n")
    with pytest.raises(ConfigError):
        store.start()
    assert store.active.exists()


def test_a_confirmation_after_the_rollback_confirms_nothing(store: ConfigStore) -> None:
    applied(store, NEW, "r1")
    store.roll_back("deadline")
    assert store.confirm() is None and store.source == "base"


def test_an_apply_cut_before_its_config_was_in_place_is_reported(store: ConfigStore) -> None:
    """The marker is written before the config: a power cut between them leaves the old config
    with a marker for a config that never ran."""
    applied(store, NEW, "r1")
    store.active.unlink()  # as if the rename never happened
    record = store.confirm()
    assert record is not None and record.outcome == "rolled_back"
    assert store.hash() == config_hash(store.base.read_bytes())

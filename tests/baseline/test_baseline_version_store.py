"""The version store: readings kept with when and how they were read, never overwritten."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.errors import ConfigurationError
from update_agent.state_dir import ENV_STATE_DIR, state_dir
from update_agent.version_reading import VersionReading
from update_agent.version_store import FILENAME, VersionStore


def r(ecu: str, sw: str | None, at: float, source: str = "uds", answered: bool = True) -> VersionReading:
    if not answered:
        return VersionReading.not_answering(ecu, "uds", at, "no response")
    return VersionReading(ecu, source, at, True, hardware_version="H1.0", software_version=sw,  # type: ignore[arg-type]
                          part_number="P-1", serial_number="S-1")


def test_latest_and_history_survive_a_reopen(tmp_path: Path) -> None:
    with VersionStore.in_dir(tmp_path / "state") as store:
        assert store.path == str(tmp_path / "state" / FILENAME)
        store.record([r("engine", "1.0.0", 100.0), r("brake", "3.4.0", 100.0)])
        store.record([r("engine", "1.1.0", 200.0, source="can-frame")])
        store.record([r("brake", None, 300.0, answered=False)])
    with VersionStore.open(tmp_path / "state" / FILENAME) as store:
        latest = store.latest()
        assert latest["engine"] == r("engine", "1.1.0", 200.0, source="can-frame")
        assert not latest["brake"].answered and latest["brake"].detail == "no response"
        assert store.latest(answered_only=True)["brake"].software_version == "3.4.0"
        assert store.latest(source="uds")["engine"].software_version == "1.0.0"
        assert [x.software_version for x in store.history("engine")] == ["1.1.0", "1.0.0"]
        assert [x.read_at for x in store.history("engine", limit=1)] == [200.0]
        assert store.ecus() == ["brake", "engine"]


def test_wal_mode_and_full_sync(tmp_path: Path) -> None:
    with VersionStore.in_dir(tmp_path):
        pass
    db = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_a_newer_schema_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.execute("CREATE TABLE keep (x)")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError, match="schema 99 is newer"):
        VersionStore.open(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("keep",)]
    db.close()


def test_a_directory_is_not_a_store_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        VersionStore.open(tmp_path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigurationError, match="not usable"):
        VersionStore.open(path)
    assert path.read_bytes() == b"this is not sqlite" * 100  # nothing already stored is lost


def test_a_failed_batch_stores_nothing(tmp_path: Path) -> None:
    with VersionStore.in_dir(tmp_path) as store:
        store.record([r("engine", "1.0.0", 1.0)])
        bad = VersionReading("engine", "telepathy", 2.0, True)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            store.record([r("engine", "2.0.0", 2.0), bad])
        assert [x.software_version for x in store.history("engine")] == ["1.0.0"]


def test_state_dir_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_STATE_DIR, raising=False)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "ota-update-agent"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/systemd:/other")
    assert state_dir() == tmp_path / "systemd"
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path / "env"))
    assert state_dir() == tmp_path / "env"
    assert state_dir(tmp_path / "opt") == tmp_path / "opt"

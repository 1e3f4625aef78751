"""The campaign journal: transitions, schema version, and crash safety against a killed writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agent.engine.campaign import CampaignCore, Policy
from agent.engine.journal import SCHEMA_VERSION, Journal
from agent.errors import ConfigurationError, VehicleStateError
from tests.engine.sim import TOPOLOGY


def test_step_rows_record_start_and_end_with_data_and_result(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.create("c1", "update", Policy(), from_version="BV OS D 1.0.0")
    row = j.begin("c1", "flash", "engine", {"job_id": "c1-flash-engine-1", "image": {"path": "/x.hex"}})
    assert j.steps("c1")[0].state == "started"
    assert j.ecu_states("c1")["engine"] == {"job_id": "c1-flash-engine-1", "attempts": 1, "outcome": "installing"}
    j.end(row, "done", {"job_id": "c1-flash-engine-1"})
    step = j.steps("c1")[0]
    assert (step.state, step.data["image"], step.result) == ("done", {"path": "/x.hex"},
                                                             {"job_id": "c1-flash-engine-1"})
    assert j.ecu_states("c1")["engine"]["outcome"] == "installed"


def test_flash_attempts_count_flashes_and_not_the_rollback(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.create("c1", "update", Policy())
    for n in (1, 2):
        j.end(j.begin("c1", "flash", "body", {"job_id": f"c1-flash-body-{n}"}), "failed", None, "wrong CRC")
    rollback = j.begin("c1", "rollback", "body", {"job_id": "c1-rollback-body-1", "image": {"path": "/old.hex"}})
    assert j.ecu_states("c1")["body"] == {"job_id": "c1-rollback-body-1", "attempts": 2, "outcome": "rolling_back"}
    j.end(rollback, "done", {"job_id": "c1-rollback-body-1"})
    assert j.ecu_states("c1")["body"] == {"job_id": "c1-rollback-body-1", "attempts": 2, "outcome": "rolled_back"}


def test_beginning_a_step_again_closes_the_leftover_row_as_interrupted(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.create("c1", "update", Policy())
    j.begin("c1", "download", None, {})
    j.begin("c1", "download", None, {})
    assert [s.state for s in j.steps("c1")] == ["interrupted", "started"]


def test_only_one_running_campaign(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db")
    j.create("c1", "update", Policy())
    with pytest.raises(VehicleStateError, match="c1 is still running"):
        j.create("c2", "update", Policy())
    j.finish("c1", "succeeded", "ok", {"engine": "installed"}, installed={"engine": {"path": "/new.hex"}})
    j.create("c2", "update", Policy())
    assert [c.id for c in j.history()] == ["c2", "c1"]
    assert j.installed() == {"engine": {"path": "/new.hex"}}
    assert j.campaign("c1").result == "succeeded"  # type: ignore[union-attr]


def test_schema_version_is_recorded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    assert Journal(path).schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConfigurationError, match="newer than this engine understands"):
        Journal(path)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigurationError, match="cannot open the campaign journal"):
        Journal(path)


WRITER = textwrap.dedent("""
    import sys
    from agent.engine.campaign import Policy
    from agent.engine.journal import Journal
    j = Journal(sys.argv[1])
    j.create("c1", "update", Policy())
    n = 0
    while True:
        row = j.begin("c1", "flash", "engine", {"job_id": f"job-{n}", "blob": "x" * 2000})
        n += 1
        print(f"committed {n}", flush=True)
        j.end(row, "failed", {"n": n}, "boom")
        n += 1
        print(f"committed {n}", flush=True)
""")


def test_journal_survives_sigkill_of_the_writer_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line.split()[1])
        if committed >= 41:  # odd: killed while a step is open
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()

    j = Journal(path)
    assert j._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    steps = j.steps("c1")
    transitions = len(steps) + sum(1 for s in steps if s.state != "started")
    assert transitions >= committed  # everything reported as committed is there
    assert all(s.state in ("started", "failed") for s in steps)
    assert sum(1 for s in steps if s.state == "started") <= 1
    # and the core can take the campaign up from it
    decision = CampaignCore(TOPOLOGY).decide(j.snapshot("c1"))
    assert decision.actions or decision.finished
    json.dumps(j.step_log("c1"))


class SqlJournal:
    """The sim driver's journal interface on the real SQLite journal (reopened after each crash)."""

    def __init__(self, path: Path, crash_at: int | None) -> None:
        self.path = path
        self.journal = Journal(path)
        self.transitions = 0
        self.crash_at = crash_at

    def _tick(self) -> None:
        from tests.engine.sim import Crash

        if self.crash_at is not None and self.transitions >= self.crash_at:
            raise Crash()
        self.transitions += 1

    def begin(self, action: Any) -> int:
        self._tick()
        return self.journal.begin("c1", action.step, action.ecu, action.data)

    def end(self, idx: int, state: str, result: Any, error: str | None) -> None:
        self._tick()
        self.journal.end(idx, state, result, error)

    def snapshot(self, policy: Policy) -> Any:
        return self.journal.snapshot("c1")


@pytest.mark.parametrize("crash_at", [3, 11, 16, 20, 27])
def test_resume_from_the_reopened_sqlite_journal_ends_like_an_uninterrupted_run(tmp_path: Path,
                                                                             crash_at: int) -> None:
    from tests.engine.sim import Crash, Vehicle, drive

    core = CampaignCore(TOPOLOGY)
    policy = Policy()
    reference = Vehicle(fail_flash={"brake": 5})
    ref = SqlJournal(tmp_path / "ref.db", None)
    ref.journal.create("c1", "update", policy)
    expected = drive(core, ref, reference, policy)  # type: ignore[arg-type]
    assert expected.result == "rolled_back"

    vehicle = Vehicle(fail_flash={"brake": 5})
    first = SqlJournal(tmp_path / "j.db", crash_at)
    first.journal.create("c1", "update", policy)
    with pytest.raises(Crash):
        drive(core, first, vehicle, policy)  # type: ignore[arg-type]
    first.journal.close()  # the process is gone; a new engine opens the file
    second = SqlJournal(tmp_path / "j.db", None)
    assert second.journal.active() is not None and second.journal.take_up("c1") == 2
    outcome = drive(core, second, vehicle, policy)  # type: ignore[arg-type]
    assert (outcome.result, dict(outcome.ecus)) == (expected.result, dict(expected.ecus))
    assert vehicle.versions == reference.versions
    assert all(s.state != "started" for s in second.journal.steps("c1"))

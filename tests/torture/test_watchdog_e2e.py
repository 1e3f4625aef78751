"""systemd's watchdog on the bench: a hung daemon is aborted and restarted, and the campaign resumes.

The units in ``configs/systemd/`` run ``Type=notify`` with ``WatchdogSec=`` and ``Restart=``; on
the bench :class:`agent.runtime.keeper.WatchdogKeeper` plays systemd's part (notify sockets,
``WATCHDOG_USEC``, SIGABRT on a missed watchdog, restart). The engine runs with its debug hang
hook enabled (``agent.watchdog.debug_hang``, bench only): SIGUSR2 makes a worker block the event
loop, as a worker stuck in a blocking call would. The daemon then stops pinging, the keeper
aborts and restarts it, the engine takes the campaign up from its journal and the campaign ends
on a whole vehicle version. A daemon that dies is restarted too (``Restart=on-failure``).
"""

from __future__ import annotations

import pytest

from agent.runtime.keeper import WatchdogTimers, parse_notify
from bench.scenario import REPO

from .harness import TortureBench, run_with_engine_hang

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

WATCHDOG_SEC = 2.0
RESTART_TIMEOUT = 60.0


def test_a_hung_engine_is_aborted_by_its_watchdog_restarted_and_the_campaign_resumes(bench: TortureBench) -> None:
    with bench.kept(WATCHDOG_SEC) as keeper:
        hang = run_with_engine_hang(bench, keeper, RESTART_TIMEOUT)
        assert not hang.run.violations, hang.run.describe()
        assert hang.run.outcome in ("completed", "rolled back")
        assert [(r.daemon, r.reason, r.old_pid) for r in hang.restarts] == [("agent", "watchdog", hang.hung_pid)]
        assert "SIGABRT" in hang.restarts[0].detail and hang.restarts[0].new_pid not in (None, hang.hung_pid)

        # Restart=on-failure: a daemon that dies is started again
        pid, seen = bench.pids(("agent",))["agent"], len(keeper.restarts)
        bench.kill({"agent": pid})
        restart = keeper.wait_restart("agent", RESTART_TIMEOUT, after=seen)
        assert (restart.reason, restart.old_pid) == ("exited", pid) and restart.new_pid not in (None, pid)
        assert bench.call("agent", "agent.status")  # it answers again


def test_watchdog_timers_arm_on_ready_rearm_on_ping_and_expire() -> None:
    now = [100.0]
    timers = WatchdogTimers(2.0, clock=lambda: now[0])
    timers.message("agent", parse_notify(b"WATCHDOG=1"))  # a ping before READY arms nothing
    assert timers.next_deadline() is None
    timers.message("agent", parse_notify(b"READY=1\nSTATUS=serving"))
    now[0] = 101.5
    timers.message("agent", parse_notify(b"WATCHDOG=1"))
    now[0] = 103.4
    assert timers.overdue() == []
    now[0] = 103.6
    assert timers.overdue() == ["agent"]
    timers.disarm("agent")
    assert timers.overdue() == [] and not timers.armed("agent")
    timers.message("brake", parse_notify(b"READY=1"))
    timers.message("brake", parse_notify(b"WATCHDOG=trigger"))
    assert timers.overdue() == ["brake"]


def test_every_unit_runs_type_notify_with_a_watchdog_that_aborts_and_a_restart_policy() -> None:
    units = sorted((REPO / "configs" / "systemd").glob("*.service"))
    assert len(units) == 5
    for unit in units:
        service = dict(line.split("=", 1) for line in unit.read_text().split("[Service]")[1].split("[")[0]
                       .splitlines() if "=" in line and not line.startswith("#"))
        assert service["Type"] == "notify" and service["NotifyAccess"] == "main", unit.name
        assert float(service["WatchdogSec"]) > 0 and service["WatchdogSignal"] == "SIGABRT", unit.name
        assert service["Restart"] in ("on-failure", "always"), unit.name  # both cover a watchdog timeout

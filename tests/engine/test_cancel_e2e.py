"""Cancel at each safe point of a campaign, and refused with its reason elsewhere (every daemon a process).

The bench's V2 -> V3 campaign with ``install_last: [body]``: brake (A/B) is flashed first, body
only after it, so "between ECUs" is a real point in time. A step is held at a known point
without sleeping by SIGSTOPping the daemon it calls (after that daemon's last answer the
campaign needed before, told by the engine's ``agent.campaign.step`` events) and SIGCONTing it
once the cancel has been answered. (Cancel while waiting for the driver's consent: see
test_engine_e2e.py.)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agent.errors import VehicleStateError
from agent.ipc.sync import SyncSubscription
from bench.scenario import V2, V3
from tests.engine.killkit import KillBench, KillRun, Transition, invariant_violations, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

POLICY = {"flash_attempts": 2, "rollback_attempts": 2, "loop_limit": 3, "all_or_nothing": True,
          "install_last": ["body"]}


@pytest.fixture(scope="module")
def bench() -> Iterator[KillBench]:
    with KillBench.running(start_version=V2, image_size=1024,
                           stack_overrides={"agent": {"campaign": POLICY}}) as b:
        yield b


def _wait(bench: KillBench, events: SyncSubscription, cid: str, transition: str) -> None:
    if wait_for(bench, events, cid, [Transition.parse(transition)]) is None:
        bench.fail(f"campaign {cid} ended before {transition}")


def _cancel_while_held(bench: KillBench, daemon: str, *, after: str, at: str) -> tuple[dict[str, Any], str]:
    """Start a campaign; once it passed ``after``, hold ``daemon`` (SIGSTOP) until the campaign passed ``at``
    and the cancel is answered. The cancel's answer and the campaign id."""
    pid = bench.pids([daemon])[daemon]
    with bench.campaign() as (agent, events, cid):
        _wait(bench, events, cid, after)
        with bench.paused(daemon, pid):
            _wait(bench, events, cid, at)
            return dict(agent.call("agent.cancel")), cid


def _end(bench: KillBench, cid: str) -> KillRun:
    run = KillRun("none", cid, record=bench.wait_end(cid), rows=bench.journal(cid), version=bench.vehicle_version(),
                  ota_mode=bench.ota_mode_active())
    run.violations = invariant_violations(bench, run)
    assert not run.violations, "\n".join(run.violations) + "\n" + run.describe()
    return run


def test_cancel_during_the_download_stops_it_and_changes_nothing(bench: KillBench) -> None:
    # dmclient answered the check; the download needs it next
    answer, cid = _cancel_while_held(bench, "dmclient", after="check:ended", at="download:started")
    assert "cancelled before OTA mode" in answer["detail"], answer
    run = _end(bench, cid)
    assert (run.record["result"], run.version) == ("cancelled", V2), run.describe()
    assert [(r.step, r.state) for r in run.rows if r.step == "download"] == [("download", "interrupted")]
    assert not {r.step for r in run.rows} & {"ota_mode_on", "flash", "rollback"}, run.describe()


def test_cancel_between_ecus_lets_the_running_flash_finish_and_rolls_it_back(bench: KillBench) -> None:
    # the update agent is not needed from OTA mode on until the first flash
    answer, cid = _cancel_while_held(bench, "update_agent", after="ota_mode_on:ended", at="flash:brake:started")
    assert "takes effect between ECUs" in answer["detail"], answer
    run = _end(bench, cid)
    assert (run.record["result"], run.version) == ("cancelled", V2), run.describe()
    # the brake's flash ran to its end, body was never started, the brake was switched back
    assert [(r.step, r.ecu, r.state) for r in run.rows if r.step in ("flash", "rollback")] == [
        ("flash", "brake", "done"), ("rollback", "brake", "done")], run.describe()
    assert {e: (s["outcome"], s["note"]) for e, s in run.record["ecus"].items()} == {
        "brake": ("rolled_back", "rolled back: bank switched"), "body": ("untouched", None)}, run.record
    assert "cancelled during installation" in run.record["detail"]


def test_cancel_is_refused_while_entering_ota_mode_and_once_installed(bench: KillBench) -> None:
    ua = bench.pids(["update_agent"])["update_agent"]
    with bench.campaign() as (agent, events, cid):
        _wait(bench, events, cid, "check:ended")
        # entering OTA mode sends functional requests through the update agent: held there
        with bench.paused("update_agent", ua):
            _wait(bench, events, cid, "ota_mode_on:started")
            with pytest.raises(VehicleStateError, match="OTA mode is being entered"):
                agent.call("agent.cancel")
        _wait(bench, events, cid, "flash:body:ended")  # body is the last ECU: the installation is complete
        with bench.paused("update_agent", ua):  # the verify step reads the ECUs through it
            _wait(bench, events, cid, "verify:started")
            refused = subprocess.run([sys.executable, "-m", "agent.cli.main", "cancel"], env=bench.scenario.env,
                                     capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0, refused.stdout
    assert "the installation is complete (verify running)" in refused.stderr, refused.stderr
    assert "otactl rollback" in refused.stderr
    run = _end(bench, cid)
    assert (run.record["result"], run.version) == ("succeeded", V3), run.describe()
    assert run.record["cancel_requested"] is False

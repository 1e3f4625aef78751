"""The install watch asks the system agent again on its verdict events, not on a fast poll."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from agent.engine.driver import CampaignDriver
from agent.engine.steps import PeerEvents, Steps, verdict_key

NEVER = 3600.0
#: how long a woken wait may take before the test fails loudly (it ends at once when woken)
WAKE_TIMEOUT = 30.0
LOW = {"rule": "battery", "value": 11.4, "expected": "battery_voltage >= 12.2"}


class SystemAgent:
    """The install verdict the test sets; counts the asks and says when one was answered."""

    def __init__(self) -> None:
        self.ok = True
        self.asks = 0
        self.asked = asyncio.Event()

    async def call(self, daemon: str, method: str, params: Mapping[str, Any]) -> Any:
        assert (daemon, method, dict(params)) == ("system_agent", "system_agent.preconditions.check",
                                                  {"phase": "install"})
        self.asks += 1
        self.asked.set()
        return {"ok": self.ok, "phase": "install", "failed": [] if self.ok else [LOW], "state_source": "test"}


def watching(poll: float) -> tuple[SystemAgent, PeerEvents, CampaignDriver]:
    agent, events = SystemAgent(), PeerEvents()
    steps = Steps("c1", agent.call, lambda *a: None, baseline=Path("/b.xml"), ota_mode_lease=30,
                  poll_interval=poll, job_timeout=60, peer_events=events)
    driver = CampaignDriver("c1", cast(Any, None), cast(Any, None), steps, lambda *a: None)
    return agent, events, driver


def test_a_verdict_event_of_the_install_phase_ends_the_watch_with_the_violation() -> None:
    agent, events, driver = watching(poll=NEVER)  # no poll and no backstop within the test: only events wake

    async def scenario() -> Any:
        watch = asyncio.create_task(driver._watch())
        await asyncio.wait_for(agent.asked.wait(), WAKE_TIMEOUT)  # asked once when the watch starts
        assert agent.asks == 1 and not watch.done()
        agent.ok = False  # the battery drops ...
        events.notify(verdict_key("download"))  # ... another phase's verdict event does not wake the watch
        await asyncio.sleep(0)
        events.notify(verdict_key("install"))  # the install verdict changed
        return await asyncio.wait_for(watch, WAKE_TIMEOUT)

    outcome = asyncio.run(scenario())
    assert outcome.state == "failed" and "battery (seen 11.4" in (outcome.error or "")
    assert agent.asks == 2


def test_a_reconnection_wakes_the_watch_too() -> None:
    agent, events, driver = watching(poll=NEVER)

    async def scenario() -> Any:
        watch = asyncio.create_task(driver._watch())
        await asyncio.wait_for(agent.asked.wait(), WAKE_TIMEOUT)
        agent.ok = False
        events.notify(None)  # what the daemon does when its IPC client reconnects (events may be lost)
        return await asyncio.wait_for(watch, WAKE_TIMEOUT)

    assert asyncio.run(scenario()).state == "failed"

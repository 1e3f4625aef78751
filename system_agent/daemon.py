"""``ota-system-agent``: preconditions and OTA mode over IPC (minimal for issue 6; issue 7 grows it).

Wiring only: the vehicle state source (:mod:`system_agent.vehicle_state`), the rules
(:mod:`system_agent.preconditions`) and :class:`~system_agent.ota_mode.OtaMode`, whose
functional requests go to ``ota-update-agent`` (``update_agent.functional``, every bus).
One task keeps OTA mode: functional TesterPresent every ``tester_present_interval`` while
active, and exit when the lease runs out; every change is published as
``system_agent.ota_mode.changed``. ``ota-system-agent --config FILE`` runs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from agent.ipc.client import IpcClient
from agent.ipc.server import Call, Handler
from agent.runtime.config import peer_socket
from agent.runtime.daemon import Daemon
from system_agent.config import SystemConfig
from system_agent.ota_mode import OtaMode
from system_agent.preconditions import evaluate
from system_agent.vehicle_state import StateFileSource

log = logging.getLogger(__name__)


class SystemDaemon(Daemon):
    """ota-system-agent: preconditions from the vehicle state, OTA mode under a lease."""

    name = "system_agent"
    config_class = SystemConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode: OtaMode | None = None
        self.update_agent: IpcClient | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def cfg(self) -> SystemConfig:
        assert isinstance(self.config, SystemConfig)
        return self.config

    async def start(self) -> None:
        cfg = self.cfg
        self.source = StateFileSource(cfg.state_file)
        self.update_agent = IpcClient(peer_socket("update_agent", cfg.source, self.env), daemon="update_agent",
                                      reconnect=True, connect_timeout=5.0, call_timeout=15.0)

        async def functional(request: str) -> Any:
            assert self.update_agent is not None
            return await self.update_agent.call("update_agent.functional", {"request": request})

        self.mode = OtaMode(cfg.state_dir / "ota_mode.json", functional, max_lease=cfg.max_lease)
        self.spawn(self._keeper(), "ota-mode")

    async def stop(self) -> None:
        if self.update_agent is not None:
            await self.update_agent.close()

    def status_details(self) -> Mapping[str, Any]:
        return {"ota_mode": self.mode.to_json() if self.mode else None, "state_file": str(self.cfg.state_file)}

    def _changed(self, reason: str) -> None:
        assert self.mode is not None
        st = self.mode.state
        log.info("system_agent: OTA mode %s (campaign %s, %s)", "on" if st.active else "off", st.campaign_id, reason)
        self.publish("system_agent.ota_mode.changed", {"active": st.active, "campaign_id": st.campaign_id,
                                                       "reason": reason})
        self._wake.set()

    async def _keeper(self) -> None:
        """Restore after a restart, then TesterPresent while active and exit on lease expiry."""
        mode = self.mode
        assert mode is not None
        async with self._lock:
            reason = await mode.restore()
        if reason is not None:
            self._changed(reason)
        beat = self.worker("ota-mode", deadline=max(30.0, 4 * self.cfg.tester_present_interval))
        while True:
            beat.heartbeat() if mode.state.active else beat.idle()
            remaining = mode.remaining()
            timeout = None if remaining is None else min(remaining, self.cfg.tester_present_interval)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                continue  # a transition: recompute
            except TimeoutError:
                pass
            async with self._lock:
                if await mode.expire():
                    self._changed("lease_expired")
                elif mode.state.active:
                    await mode.keep_alive()

    def handlers(self) -> dict[str, Handler]:
        def mode() -> OtaMode:
            assert self.mode is not None, "handlers run only after start()"
            return self.mode

        async def check(call: Call) -> Any:
            phase = call.params["phase"]
            snapshot = await asyncio.to_thread(self.source.snapshot)
            verdict = evaluate(self.cfg.rules[phase], snapshot.values)
            source = snapshot.source + (f" ({snapshot.problem})" if snapshot.problem else "")
            if not verdict.ok:
                log.info("system_agent: %s preconditions fail: %s", phase,
                         "; ".join(f"{f.rule}: {f.value!r}, expected {f.expected}" for f in verdict.failed))
            return {"ok": verdict.ok, "phase": phase, "failed": [f.to_json() for f in verdict.failed],
                    "state_source": source}

        async def enter(call: Call) -> Any:
            async with self._lock:
                entered = await mode().enter(call.params["campaign_id"], call.params["lease_s"])
            if entered:
                self._changed("enter")
            else:
                self._wake.set()
            return mode().to_json()

        async def renew(call: Call) -> Any:
            async with self._lock:
                await mode().renew(call.params["campaign_id"], call.params["lease_s"])
            self._wake.set()
            return mode().to_json()

        async def exit_(call: Call) -> Any:
            async with self._lock:
                left = await mode().exit(call.params["campaign_id"])
            if left:
                self._changed("exit")
            return mode().to_json()

        async def status(call: Call) -> Any:
            return mode().to_json()

        return {"system_agent.preconditions.check": check, "system_agent.ota_mode.enter": enter,
                "system_agent.ota_mode.renew": renew, "system_agent.ota_mode.exit": exit_,
                "system_agent.ota_mode.status": status}


def main(argv: list[str] | None = None) -> int:
    return SystemDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

"""``ota-system-agent``: vehicle state, preconditions and OTA mode over IPC.

Wiring only: the vehicle state source (:class:`~system_agent.can_source.CanStateSource`,
the DBC signals of every bus with their ages; or the state file of
:mod:`system_agent.vehicle_state` for a desk without a bus), the rules
(:mod:`system_agent.preconditions`) and :class:`~system_agent.ota_mode.OtaMode`, whose
functional requests go to ``ota-update-agent`` (``update_agent.functional``, every bus).

Tasks: the *watch* re-reads the state when a frame arrives or a signal is about to go
stale, and publishes ``system_agent.state.changed`` when the known values change and
``system_agent.preconditions.verdict`` when a phase's verdict changes. The *OTA-mode
keeper* sends functional TesterPresent every ``tester_present_interval`` while active and
exits when the lease runs out. While OTA mode is on, the OTA-mode frame is broadcast on
every bus and the power hold file is kept (:mod:`system_agent.ota_signals`); both end with
OTA mode, also when it ends by lease expiry. Every change of OTA mode is published as
``system_agent.ota_mode.changed``. ``ota-system-agent --config FILE`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.ipc.client import IpcClient
from agent.ipc.server import Call, Handler
from agent.runtime.config import peer_socket
from agent.runtime.daemon import Daemon
from system_agent.config import SystemConfig
from system_agent.network import SIGNAL as NETWORK_SIGNAL
from system_agent.network import NetworkProbe
from system_agent.ota_mode import OtaMode
from system_agent.ota_signals import OtaModeBroadcast, PowerHold
from system_agent.preconditions import PHASES, Verdict, evaluate
from system_agent.vehicle_state import StateFileSource, VehicleState, VehicleStateSource

if TYPE_CHECKING:  # python-can and cantools load in start() for state_source can only
    from system_agent.can_source import CanStateSource

#: s between reads of the state file (file source: nothing tells when it changes)
FILE_POLL = 0.5

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
        self._state_wake = asyncio.Event()
        #: set (and replaced) by the watch whenever the state changes
        self._state_news = asyncio.Event()
        self.source: VehicleStateSource | None = None
        #: the source when it is the buses (state_source can)
        self.can: CanStateSource | None = None
        self.broadcast: OtaModeBroadcast | None = None
        self.hold: PowerHold | None = None
        self.network: NetworkProbe | None = None
        self.verdicts: dict[str, Verdict] = {}

    @property
    def cfg(self) -> SystemConfig:
        assert isinstance(self.config, SystemConfig)
        return self.config

    async def start(self) -> None:
        cfg = self.cfg
        self.hold = PowerHold(cfg.power_hold_file)
        if cfg.state_source == "can":
            assert cfg.can is not None
            from agent.config.vehicle import load_vehicle_config
            from system_agent.can_source import CanStateSource
            from update_agent.version_frame import load_dbc

            loop = asyncio.get_running_loop()
            db = load_dbc(cfg.can.dbc)  # not kept: the model and the broadcast keep their messages only
            source = CanStateSource(load_vehicle_config(cfg.can.vehicle_config), cfg.can.dbc, db, cfg.can.signals,
                                    stale_factor=cfg.can.stale_factor, stale_after=cfg.can.stale_after,
                                    on_frame=lambda: _set_from_thread(loop, self._state_wake))
            source.start(loop)  # buses with a file descriptor are read from this loop, not by threads
            self.source = self.can = source
            self.broadcast = OtaModeBroadcast({n: link.bus for n, link in source.links.items()}, db,
                                              cfg.can.ota_mode_message)
        else:
            self.source = StateFileSource(cfg.state_file)
        self.update_agent = IpcClient(peer_socket("update_agent", cfg.source, self.env), daemon="update_agent",
                                      reconnect=True, connect_timeout=5.0, call_timeout=15.0)

        async def functional(request: str) -> Any:
            assert self.update_agent is not None
            return await self.update_agent.call("update_agent.functional", {"request": request})

        self.mode = OtaMode(cfg.state_dir / "ota_mode.json", functional, max_lease=cfg.max_lease)
        self.spawn(self._keeper(), "ota-mode")
        self.spawn(self._watch(), "vehicle-state")
        if cfg.network is not None:
            self.network = NetworkProbe(cfg.network.url, interval=cfg.network.interval, timeout=cfg.network.timeout)
            self.spawn(self.network.run(self._state_wake.set), "network-probe")

    async def stop(self) -> None:
        if self.broadcast is not None:
            self.broadcast.stop()  # the frame stops; the hold file stays for the lease (restart takes it up)
        if self.can is not None:
            self.can.close()
        if self.update_agent is not None:
            await self.update_agent.close()

    def status_details(self) -> Mapping[str, Any]:
        return {"ota_mode": self.mode.to_json() if self.mode else None, "state_source": self.cfg.state_source,
                "state_file": str(self.cfg.state_file)}

    # -- vehicle state ---------------------------------------------------------------------------
    async def snapshot(self) -> VehicleState:
        assert self.source is not None
        if self.can is not None:
            state = self.can.snapshot()
        else:
            state = await asyncio.to_thread(self.source.snapshot)
        reachable = self.network.reading() if self.network is not None else None
        if reachable is None:
            return state
        return VehicleState({**state.values, NETWORK_SIGNAL: reachable}, state.source, state.problem)

    async def _watch(self) -> None:
        """Publish state changes and verdict changes (see the module docstring)."""
        last: tuple[dict[str, Any], str | None] | None = None
        while True:
            state = await self.snapshot()
            now = (dict(state.values), state.problem)
            if now != last:
                last = now
                self._state_news.set()
                self._state_news = asyncio.Event()
                self.publish("system_agent.state.changed", {"values": dict(state.values), "source": state.source,
                                                           "problem": state.problem})
                for phase in PHASES:
                    verdict = evaluate(self.cfg.rules[phase], state.values)
                    if self.verdicts.get(phase) != verdict:
                        self.verdicts[phase] = verdict
                        self.publish("system_agent.preconditions.verdict", self._verdict_json(phase, verdict,
                                                                                              state))
            if self.can is not None:
                nxt = self.can.next_change()
                timeout = None if nxt is None else nxt + 0.01
            else:
                timeout = FILE_POLL
            if self.network is not None:  # its reading goes unknown when the probe stops
                timeout = min(timeout or self.network.interval, self.network.interval)
            self._state_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._state_wake.wait(), timeout)

    def settling(self) -> float:
        """Seconds until every signal not heard since the start may count as unknown (0: now)."""
        waits = [0.0]
        if self.can is not None:
            waits.append(self.can.settling())
        if self.network is not None:
            waits.append(self.network.settling())
        return max(waits)

    async def settled_verdict(self, phase: str) -> tuple[VehicleState, Verdict]:
        """The verdict on the state now; a failing one right after a start waits (on state changes) until
        the signals not heard yet have had their full timeout, so a restart alone never fails a rule."""
        while True:
            news = self._state_news
            snapshot = await self.snapshot()
            verdict = evaluate(self.cfg.rules[phase], snapshot.values)
            wait = 0.0 if verdict.ok else self.settling()
            if wait <= 0.0:
                return snapshot, verdict
            log.info("system_agent: %s verdict waits up to %.2f s for signals not heard since the start (%s)",
                     phase, wait, snapshot.problem)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), wait)

    @staticmethod
    def _verdict_json(phase: str, verdict: Verdict, state: VehicleState) -> dict[str, Any]:
        source = state.source + (f" ({state.problem})" if state.problem else "")
        return {"ok": verdict.ok, "phase": phase, "failed": [f.to_json() for f in verdict.failed],
                "state_source": source}

    # -- OTA mode ---------------------------------------------------------------------------------
    def _sync_signals(self) -> None:
        """OTA-mode frame and power hold follow the mode: on while active, off (file removed) otherwise."""
        assert self.mode is not None and self.hold is not None
        if self.mode.state.active:
            if self.broadcast is not None:
                self.broadcast.start()
            self.hold.hold(self.mode.state.campaign_id, self.mode.remaining() or 0.0)
        else:
            if self.broadcast is not None:
                self.broadcast.stop()
            self.hold.release()

    def _changed(self, reason: str) -> None:
        assert self.mode is not None
        st = self.mode.state
        log.info("system_agent: OTA mode %s (campaign %s, %s)", "on" if st.active else "off", st.campaign_id, reason)
        self._sync_signals()
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
        else:
            self._sync_signals()  # a hold file left by a crash while inactive goes
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
            snapshot, verdict = await self.settled_verdict(phase)
            if not verdict.ok:
                log.info("system_agent: %s preconditions fail: %s", phase,
                         "; ".join(f"{f.rule}: {f.value!r}, expected {f.expected}" for f in verdict.failed))
            return self._verdict_json(phase, verdict, snapshot)

        async def state(call: Call) -> Any:
            snapshot = await self.snapshot()
            signals = self.can.to_json() if self.can is not None else {}
            return {"values": dict(snapshot.values), "source": snapshot.source, "problem": snapshot.problem,
                    "signals": signals}

        async def enter(call: Call) -> Any:
            async with self._lock:
                entered = await mode().enter(call.params["campaign_id"], call.params["lease_s"])
            if entered:  # an entry an ECU refused ends inactive at once (OtaMode.enter)
                self._changed("enter" if mode().state.active else "enter_refused")
            else:
                self._sync_signals()
                self._wake.set()
            return mode().to_json()

        async def renew(call: Call) -> Any:
            async with self._lock:
                await mode().renew(call.params["campaign_id"], call.params["lease_s"])
            self._sync_signals()  # the hold file carries the new lease
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

        return {"system_agent.preconditions.check": check, "system_agent.state.get": state,
                "system_agent.ota_mode.enter": enter,
                "system_agent.ota_mode.renew": renew, "system_agent.ota_mode.exit": exit_,
                "system_agent.ota_mode.status": status}


def _set_from_thread(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(event.set)


def main(argv: list[str] | None = None) -> int:
    return SystemDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

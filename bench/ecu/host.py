"""One process hosting the simulated ECUs of a vehicle config on their buses.

:class:`BenchHost` validates every selected ECU's ``sim:`` section before it
starts anything, opens each ECU's state directory, starts the bench hub for
the config's ``benchhub`` buses (unless told not to), opens each bus once with
one :class:`~bench.ecu.runner.BusRunner` serving the ECUs on it, and runs
until stopped or until a bus fails.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import can

from agent.config.vehicle import BusConfig, EcuConfig, VehicleConfig
from agent.errors import ConfigurationError, TransportError
from bench.canbus.faults import FaultSpec
from bench.canbus.hub import HubProcess
from bench.canbus.paths import socket_path
from bench.ecu.bootloader import Bootloader
from bench.ecu.config_broadcast import config_listener
from bench.ecu.flash import Layout
from bench.ecu.runner import Application, BusRunner, FrameListener
from bench.ecu.simconfig import SimConfig, parse_sim
from bench.ecu.store import EcuStore
from bench.ecu.transport import EcuPort, server_params

if TYPE_CHECKING:
    from bench.version_broadcast import VersionFramesSim

log = logging.getLogger(__name__)

BENCH_INTERFACE = "benchhub"


def select_ecus(config: VehicleConfig, names: Sequence[str] | None) -> list[EcuConfig]:
    """The ECUs to simulate: those named, else every ECU with a ``sim:`` section."""
    if names:
        chosen = [config.ecu(name) for name in dict.fromkeys(names)]
        for ecu in chosen:
            if ecu.sim is None:
                raise ConfigurationError(f"ECU {ecu.name!r} has no sim: section, so it cannot be simulated",
                                         source=config.source, key=f"ecus.{ecu.name}")
        return chosen
    chosen = [ecu for ecu in config.ecus.values() if ecu.sim is not None]
    if not chosen:
        raise ConfigurationError("no ECU has a sim: section: nothing to simulate", source=config.source)
    return chosen


def hub_channels(config: VehicleConfig) -> list[str]:
    return [bus.channel for bus in config.buses.values() if bus.interface == BENCH_INTERFACE]


def start_hub(channels: Iterable[str], faults: dict[str, FaultSpec] | None = None) -> HubProcess:
    """Start a bench hub (with ``faults`` per channel), refusing to take over a channel another hub serves."""
    channels = list(channels)
    for channel in channels:
        path = socket_path(channel)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                continue
        raise TransportError(f"a bench hub already serves channel {channel!r} at {path}; stop it, or join it "
                             "with --no-hub")
    return HubProcess(channels, faults=faults).start()


def open_bus(bus: BusConfig) -> can.BusABC:
    kwargs: dict[str, Any] = dict(bus.options)
    kwargs.update(interface=bus.interface, channel=bus.channel, bitrate=bus.bitrate, fd=bus.fd)
    if bus.data_bitrate is not None:
        kwargs["data_bitrate"] = bus.data_bitrate
    try:
        return can.Bus(**kwargs)
    except (can.CanError, OSError, ValueError) as e:
        raise TransportError(f"cannot open bus {bus.name!r} ({bus.interface} {bus.channel}): {e}") from e


class BenchHost:
    """The simulated ECUs of one config, started and stopped together."""

    def __init__(self, config: VehicleConfig, state_dir: Path, *, ecus: Sequence[str] | None = None,
                 hub: bool = True) -> None:
        self.config = config
        self.state_dir = state_dir
        self.ecus = select_ecus(config, ecus)
        self.sims: dict[str, SimConfig] = {ecu.name: parse_sim(ecu) for ecu in self.ecus}
        self.with_hub = hub
        self.hub: HubProcess | None = None
        self.cores: list[Bootloader] = []
        self.buses: dict[str, can.BusABC] = {}
        self.runners: list[BusRunner] = []
        #: set when a bus fails while running (``failure`` says which and why); the CLI sets it on SIGTERM
        self.stop_event = threading.Event()
        self.failure = ""

    @property
    def names(self) -> list[str]:
        return [ecu.name for ecu in self.ecus]

    def start(self) -> None:
        try:
            self._start(time.monotonic())
        except BaseException:
            self.stop()
            raise

    def _start(self, now: float) -> None:
        for ecu in self.ecus:
            store = EcuStore(self.state_dir / ecu.name, Layout(ecu.memory.regions),
                             2 if ecu.banks == "ab" else 1, ecu.name)
            self.cores.append(Bootloader(ecu, self.sims[ecu.name], store, now=now))
        if self.with_hub and hub_channels(self.config):
            self.hub = start_hub(hub_channels(self.config))
        by_bus: dict[str, list[tuple[Bootloader, EcuPort]]] = {}
        for ecu, core in zip(self.ecus, self.cores, strict=True):
            if ecu.bus not in self.buses:
                self.buses[ecu.bus] = open_bus(self.config.buses[ecu.bus])
            sim = self.sims[ecu.name]
            params = server_params(ecu.isotp, stmin=sim.stmin, blocksize=sim.blocksize,
                                   max_block_length=sim.max_block_length)
            port = EcuPort(ecu.name, self.buses[ecu.bus], ecu.isotp, params)
            by_bus.setdefault(ecu.bus, []).append((core, port))
            log.info("%s: listening on %s (%s)", ecu.name, ecu.bus, port.address)
        vehicle_dbc = self.config.version_frames.dbc if self.config.version_frames is not None else None
        for name, ecus in by_bus.items():
            apps = {index: self._version_frames(core, core.sim.version_frames)
                    for index, (core, _) in enumerate(ecus) if core.sim.version_frames is not None}
            listeners: dict[tuple[int, bool], list[tuple[int, FrameListener]]] = {}
            for index, (core, _) in enumerate(ecus):
                if core.sim.config_broadcast is not None:
                    key, listener = config_listener(core, core.sim.config_broadcast, vehicle_dbc)
                    listeners.setdefault(key, []).append((index, listener))
            runner = BusRunner(name, self.buses[name], ecus, on_failure=self._on_failure, applications=apps,
                               listeners=listeners)
            runner.start()
            self.runners.append(runner)

    def _version_frames(self, core: Bootloader, settings: VersionFramesSim) -> Application:
        from bench.version_broadcast import broadcaster_for  # cantools: only when configured

        return broadcaster_for(self.buses[core.ecu.bus], self.config, core.ecu, settings,
                               lambda: (core.sim.hardware_version, core.software_version))

    def _on_failure(self, message: str) -> None:
        self.failure = message
        self.stop_event.set()

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        for bus in self.buses.values():
            with contextlib.suppress(can.CanError, OSError):
                bus.shutdown()
        for core in self.cores:
            core.close()
        if self.hub is not None:
            self.hub.stop()
        self.runners, self.buses, self.cores, self.hub = [], {}, [], None

"""Collect every ECU's versions, actively (UDS) and passively (version frames), and store them.

Passive listening starts first and runs while the UDS reads go on, so the
whole collection takes as long as the slower of the two, not their sum.
Per ECU the reading to match on is the newest *answered* one of this run
(so an ECU heard on its version frame but deaf to UDS is still seen, and the
other way round); if no source heard it, its newest not-answering reading. What that
reading lacks of the part and serial numbers (a version frame carries neither) comes from
the other answered readings of the run; the versions matched on stay the chosen reading's.
Every reading of the run goes to the :class:`~update_agent.version_store.VersionStore`.

The DBC is parsed once per file version (not at every collection), and the listening links
take only the version frames (acceptance filters: in the kernel on socketcan, in the hub on
the bench), so the UDS traffic and the vehicle's signals on the same bus do not wake them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import can
from cantools.database.can import Database

from agent.config.vehicle import VehicleConfig
from agent.errors import OtaError
from update_agent.active_versions import collect_active
from update_agent.passive_versions import SOURCE as FRAME_SOURCE
from update_agent.passive_versions import PassiveVersionCollector, VersionFrameDecoder
from update_agent.uds.transport import SHORT_NOTIFIER_TIMEOUT, CanLink
from update_agent.version_frame import load_dbc, version_messages
from update_agent.version_reading import VersionReading, freshest, with_identity_from
from update_agent.version_store import VersionStore

log = logging.getLogger(__name__)

_dbc_lock = threading.Lock()
#: (path, mtime_ns, size) -> the parsed DBC
_dbc_cache: dict[tuple[str, int, int], Database] = {}


@dataclass
class Collection:
    #: per ECU, the reading to match on
    readings: dict[str, VersionReading]
    #: every reading of this run, by source
    by_source: dict[str, dict[str, VersionReading]] = field(default_factory=dict)
    #: passive collection problems worth showing (bus could not be opened, bad frames)
    notes: list[str] = field(default_factory=list)


def collect(vehicle: VehicleConfig, *, ecus: Iterable[str] | None = None, uds: bool = True,
            passive: bool = True, listen: float | None = None, uds_timeout: float | None = None,
            store: VersionStore | None = None, clock: Callable[[], float] = time.time,
            active: Callable[..., dict[str, VersionReading]] = collect_active) -> Collection:
    """Collect versions of the (named) ECUs; ``passive`` only takes effect when the vehicle
    config has a ``version_frames`` section."""
    names = list(ecus) if ecus is not None else list(vehicle.ecus)
    for name in names:
        vehicle.ecu(name)  # unknown names are a configuration error
    notes: list[str] = []
    links: list[CanLink] = []
    collector: PassiveVersionCollector | None = None
    expected: set[str] = set()
    frames = vehicle.version_frames if passive else None
    window = listen if listen is not None else (frames.listen if frames else 0.0)
    try:
        if frames is not None:
            db = _load_dbc(frames.dbc)
            messages = version_messages(db)
            collector = PassiveVersionCollector(clock=clock)
            for bus_name, bus in vehicle.buses.items():
                on_bus = [n for n in names if vehicle.ecus[n].bus == bus_name]
                decoder = VersionFrameDecoder(db, on_bus)
                if not decoder.ecus:
                    continue
                filters: can.typechecking.CanFilters = [
                    {"can_id": m.frame_id, "can_mask": 0x1FFFFFFF if m.is_extended_frame else 0x7FF,
                     "extended": m.is_extended_frame} for ecu, m in messages.items() if ecu in decoder.ecus]
                try:
                    link = CanLink(bus, notifier_timeout=SHORT_NOTIFIER_TIMEOUT, can_filters=filters)
                except OtaError as e:
                    notes.append(f"version frames on bus {bus_name}: {e}")
                    continue
                links.append(link)
                link.notifier.add_listener(collector.listener(decoder))
                expected |= decoder.ecus
        started = time.monotonic()
        by_source: dict[str, dict[str, VersionReading]] = {}
        if uds:
            by_source["uds"] = active(vehicle, names, timeout=uds_timeout, clock=clock)
        if collector is not None:
            remaining = max(0.0, window - (time.monotonic() - started))
            collector.wait_for(expected, remaining)
            heard = collector.readings()
            stamp = clock()
            silent = sorted(expected - heard.keys())
            for ecu in silent:
                heard[ecu] = VersionReading.not_answering(ecu, FRAME_SOURCE, stamp,
                                                          f"no version frame within {window:g} s")
            if silent:
                notes.append(f"no version frame within {window:g} s from {', '.join(silent)}")
            by_source[FRAME_SOURCE] = heard
            notes += [f"bad version frame: {why}" for why in collector.bad_frames]
    finally:
        for link in links:
            link.close()
    merged: dict[str, VersionReading] = {}
    for name in names:
        candidates = [src[name] for src in by_source.values() if name in src]
        best = freshest(candidates)
        if best is not None:
            notes += _disagreements(best, candidates)
            merged[name] = with_identity_from(best, candidates)  # e.g. a frame reading: the UDS part number
    if store is not None:
        store.record(r for src in by_source.values() for r in src.values())
    return Collection(readings=merged, by_source=by_source, notes=notes)


def _load_dbc(path: Path) -> Database:
    """:func:`~update_agent.version_frame.load_dbc`, parsed again only when the file changed."""
    try:
        st = path.stat()
    except OSError:
        return load_dbc(path)  # its error names the file
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _dbc_lock:
        db = _dbc_cache.get(key)
    if db is None:
        db = load_dbc(path)
        with _dbc_lock:
            _dbc_cache.clear()  # one vehicle config per process: keep only the newest
            _dbc_cache[key] = db
    return db


def _disagreements(used: VersionReading, candidates: list[VersionReading]) -> list[str]:
    out = []
    for other in candidates:
        if other is used or not other.answered:
            continue
        for what in ("hardware_version", "software_version"):
            a, b = getattr(used, what), getattr(other, what)
            if a is not None and b is not None and a != b:
                out.append(f"{used.ecu}: {used.source} says {what.replace('_', ' ')} {a}, "
                           f"{other.source} says {b}; using the newer ({used.source})")
    return out

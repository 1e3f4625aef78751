"""Passive ECU version collection: listen to the ECUs' periodic version frames.

ECUs that broadcast their hardware and software versions (FAW paper 3.2.2)
are heard without a diagnostic request. A python-can ``Listener`` decodes the
frames with cantools (messages and signals from the vehicle's DBC, meaning
from :mod:`update_agent.version_frame`); each decoded frame becomes a
:class:`~update_agent.version_reading.VersionReading` with source
``can-frame``.

A frame whose ``VersionCounter`` is 0 is the first after the ECU restarted:
it carries the version now running (after a flash and reset, the new one).
New, changed and first-after-reset readings are handed to ``on_change``
(e.g. :meth:`VersionStore.record`); the steady repeats are not, so the store
holds what changed, not 10 rows a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import can
from cantools.database.can import Database, Message

from update_agent import version_frame
from update_agent.version_frame import FrameVersions, VersionFrameError
from update_agent.version_reading import Source, VersionReading

log = logging.getLogger(__name__)

SOURCE: Source = "can-frame"


@dataclass(frozen=True)
class HeardFrame:
    reading: VersionReading
    frame: FrameVersions


class VersionFrameDecoder:
    """CAN frame -> reading, for the version messages of ``ecus`` (all in the DBC if None)."""

    def __init__(self, db: Database, ecus: Iterable[str] | None = None) -> None:
        wanted = None if ecus is None else set(ecus)
        self._by_id: dict[tuple[int, bool], tuple[str, Message]] = {}
        for ecu, message in version_frame.version_messages(db).items():
            if wanted is None or ecu in wanted:
                self._by_id[(message.frame_id, message.is_extended_frame)] = (ecu, message)

    @property
    def ecus(self) -> frozenset[str]:
        return frozenset(ecu for ecu, _ in self._by_id.values())

    def decode(self, msg: can.Message, read_at: float) -> HeardFrame | None:
        """None for frames that are not version frames of our ECUs; raises on a bad one."""
        if msg.is_error_frame or msg.is_remote_frame:
            return None
        found = self._by_id.get((msg.arbitration_id, msg.is_extended_id))
        if found is None:
            return None
        ecu, message = found
        try:
            signals = message.decode(bytes(msg.data), decode_choices=False, scaling=False)
        except Exception as e:  # cantools: DecodeError / ValueError on a short frame
            raise VersionFrameError(f"{message.name} from {ecu}: cannot decode "
                                    f"{bytes(msg.data).hex()}: {e}") from e
        if not isinstance(signals, dict):  # pragma: no cover - container messages only
            raise VersionFrameError(f"{message.name}: not a plain message")
        frame = version_frame.decode(signals)
        reading = VersionReading(ecu=ecu, source=SOURCE, read_at=read_at, answered=True,
                                 hardware_version=frame.hardware_version,
                                 software_version=frame.software_version)
        return HeardFrame(reading, frame)


class PassiveVersionCollector:
    """The latest version frame of each ECU, fed by one listener per bus."""

    def __init__(self, *, on_change: Callable[[VersionReading], object] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._on_change = on_change
        self._cond = threading.Condition()
        self._latest: dict[str, HeardFrame] = {}
        #: frames that looked like version frames but did not decode (last few reasons)
        self.bad_frames: list[str] = []
        self.restarts: dict[str, int] = {}

    def listener(self, decoder: VersionFrameDecoder) -> can.Listener:
        return _Listener(self, decoder)

    def heard(self, frame: HeardFrame) -> None:
        reading = frame.reading
        with self._cond:
            previous = self._latest.get(reading.ecu)
            self._latest[reading.ecu] = frame
            if frame.frame.first_after_reset:
                self.restarts[reading.ecu] = self.restarts.get(reading.ecu, 0) + 1
            self._cond.notify_all()
        changed = previous is None or frame.frame.first_after_reset or \
            (previous.reading.hardware_version, previous.reading.software_version) != \
            (reading.hardware_version, reading.software_version)
        if changed:
            log.info("version frame: %s hardware %s software %s%s", reading.ecu,
                     reading.hardware_version, reading.software_version,
                     " (first after reset)" if frame.frame.first_after_reset else "")
            if self._on_change is not None:
                self._on_change(reading)

    def bad(self, reason: str) -> None:
        log.warning("version frame ignored: %s", reason)
        with self._cond:
            self.bad_frames = [*self.bad_frames[-9:], reason]

    def readings(self) -> dict[str, VersionReading]:
        with self._cond:
            return {ecu: f.reading for ecu, f in self._latest.items()}

    def frames(self) -> dict[str, HeardFrame]:
        with self._cond:
            return dict(self._latest)

    def wait_for(self, ecus: Iterable[str], timeout: float,
                 predicate: Callable[[Mapping[str, HeardFrame]], bool] | None = None) -> bool:
        """Block until every ECU in ``ecus`` was heard (and ``predicate`` holds), or ``timeout``."""
        wanted = set(ecus)

        def done() -> bool:
            if not wanted <= self._latest.keys():
                return False
            return predicate is None or predicate(self._latest)

        with self._cond:
            return self._cond.wait_for(done, timeout)

    def now(self) -> float:
        return self._clock()


class _Listener(can.Listener):
    def __init__(self, collector: PassiveVersionCollector, decoder: VersionFrameDecoder) -> None:
        self.collector = collector
        self.decoder = decoder

    def on_message_received(self, msg: can.Message) -> None:
        try:
            frame = self.decoder.decode(msg, self.collector.now())
        except VersionFrameError as e:
            self.collector.bad(str(e))
            return
        if frame is not None:
            self.collector.heard(frame)

    def on_error(self, exc: Exception) -> None:
        # The bus failed (e.g. the bench hub went away): log it; the collection
        # then reports the ECUs as not heard instead of hanging.
        log.warning("version frame listener stopped: %s", exc)


def collect_passive(buses: Sequence[tuple[can.BusABC, Iterable[str]]], db: Database, timeout: float, *,
                    on_change: Callable[[VersionReading], object] | None = None,
                    clock: Callable[[], float] = time.time) -> dict[str, VersionReading]:
    """Listen on each bus for its ECUs' version frames until all are heard or ``timeout`` s pass.

    ``buses`` pairs each opened bus with the ECUs on it. ECUs without a version
    message in the DBC are not waited for and not in the result; ECUs with one
    that stay silent get a not-answering reading.
    """
    collector = PassiveVersionCollector(on_change=on_change, clock=clock)
    notifiers: list[can.Notifier] = []
    expected: set[str] = set()
    try:
        for bus, ecus in buses:
            decoder = VersionFrameDecoder(db, ecus)
            expected |= decoder.ecus
            notifiers.append(can.Notifier(bus, [collector.listener(decoder)], timeout=0.1))
        collector.wait_for(expected, timeout)
    finally:
        for notifier in notifiers:
            notifier.stop()
    readings = collector.readings()
    stamp = clock()
    for ecu in sorted(expected - readings.keys()):
        readings[ecu] = VersionReading.not_answering(ecu, SOURCE, stamp,
                                                     f"no version frame within {timeout:g} s")
    return readings

"""What the signals of a version broadcast frame mean (``configs/bench-vehicle.dbc``).

The bit layout lives in the DBC and cantools does the bit work; this module
only maps version strings to signal values and back, for the sender (the
bench ECU, :mod:`bench.version_broadcast`) and the receiver
(:mod:`update_agent.passive_versions`).

One 8-byte message per ECU, sent by that ECU (the DBC transmitter node is the
ECU's name in the vehicle config, which is how the receiver knows whose
frame it is), every ``GenMsgCycleTime`` ms:

=============== ==== ===== =====================================================
signal          byte bits  meaning
=============== ==== ===== =====================================================
SwMajor         0    8     software version ``M`` of ``M.m.p``
SwMinor         1    8     software version ``m``
SwPatch         2    8     software version ``p``
HwPrefix        3    8     hardware version letter as ASCII (``H`` = 72), 0: none
HwMajor         4    8     hardware version ``M`` of ``H M.m``
HwMinor         5    8     hardware version ``m``
VersionCounter  6    8     0 in the first frame after a (re)start, then 1..255,
                           wrapping to 1: a 0 marks the first frame after a
                           reset, which carries the version now running
=============== ==== ===== =====================================================

So a software version ``3.4.0`` and a hardware version ``H2.1`` travel as
``03 04 00 48 02 01 cc 00``. Versions that do not fit (a part above 255, a
suffix) cannot be broadcast and must be read over UDS.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cantools
from cantools.database.can import Database, Message

from agent.errors import ConfigurationError

SIGNALS = ("SwMajor", "SwMinor", "SwPatch", "HwPrefix", "HwMajor", "HwMinor", "VersionCounter")
COUNTER_MAX = 255

_SOFTWARE = re.compile(r"(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})")
_HARDWARE = re.compile(r"([A-Z]?)(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})")


class VersionFrameError(ValueError):
    """A version that cannot travel in a version frame, or a frame that does not decode."""


@dataclass(frozen=True)
class FrameVersions:
    hardware_version: str
    software_version: str
    counter: int

    @property
    def first_after_reset(self) -> bool:
        return self.counter == 0


def next_counter(counter: int) -> int:
    """0 only on the first frame after a start; 255 wraps to 1."""
    return 1 if counter >= COUNTER_MAX else counter + 1


def encode(hardware_version: str, software_version: str, counter: int) -> dict[str, int]:
    """Signal values for cantools ``Message.encode``."""
    sw = _SOFTWARE.fullmatch(software_version)
    if sw is None or any(int(part) > 255 for part in sw.groups()):
        raise VersionFrameError(f"software version {software_version!r} is not M.m.p with parts 0..255")
    hw = _HARDWARE.fullmatch(hardware_version)
    if hw is None or int(hw.group(2)) > 255 or int(hw.group(3)) > 255:
        raise VersionFrameError(
            f"hardware version {hardware_version!r} is not [letter]M.m with parts 0..255")
    if not 0 <= counter <= COUNTER_MAX:
        raise VersionFrameError(f"counter {counter} is not 0..{COUNTER_MAX}")
    return {
        "SwMajor": int(sw.group(1)), "SwMinor": int(sw.group(2)), "SwPatch": int(sw.group(3)),
        "HwPrefix": ord(hw.group(1)) if hw.group(1) else 0,
        "HwMajor": int(hw.group(2)), "HwMinor": int(hw.group(3)),
        "VersionCounter": counter,
    }


def decode(signals: Mapping[str, object]) -> FrameVersions:
    """Version strings from the signal values cantools decoded."""
    values: dict[str, int] = {}
    for name in SIGNALS:
        value = signals.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise VersionFrameError(f"signal {name} is {value!r}, not an integer 0..255")
        values[name] = value
    prefix = values["HwPrefix"]
    if prefix and not 65 <= prefix <= 90:
        raise VersionFrameError(f"signal HwPrefix is {prefix}, not 0 or an ASCII capital letter")
    letter = chr(prefix) if prefix else ""
    return FrameVersions(
        hardware_version=f"{letter}{values['HwMajor']}.{values['HwMinor']}",
        software_version=f"{values['SwMajor']}.{values['SwMinor']}.{values['SwPatch']}",
        counter=values["VersionCounter"],
    )


def load_dbc(path: str | Path) -> Database:
    """Load a DBC with cantools; a ConfigurationError naming the file on any fault."""
    try:
        db = cantools.database.load_file(str(path), database_format="dbc", strict=True)
    except FileNotFoundError as e:
        raise ConfigurationError("DBC file not found", source=str(path)) from e
    except Exception as e:  # cantools raises many types (ParseError, ValueError, ...)
        raise ConfigurationError(f"cannot load DBC: {e}", source=str(path)) from e
    if not isinstance(db, Database):  # pragma: no cover - database_format="dbc" gives a CAN database
        raise ConfigurationError("not a CAN database", source=str(path))
    return db


def version_messages(db: Database) -> dict[str, Message]:
    """ECU name (the message's single transmitter) -> its version broadcast message."""
    out: dict[str, Message] = {}
    for message in db.messages:
        names = {s.name for s in message.signals}
        if not set(SIGNALS) <= names or len(message.senders) != 1:
            continue
        ecu = message.senders[0]
        if ecu in out:
            raise ConfigurationError(
                f"ECU {ecu!r} sends two version messages ({out[ecu].name}, {message.name})")
        out[ecu] = message
    return out

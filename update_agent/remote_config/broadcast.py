"""The CAN frame of a broadcast configuration item, encoded by cantools from the vehicle DBC.

The item names a message and a signal. In a multiplexed message (the bench's
``OTA_CONFIG_BROADCAST``) the frame also carries the multiplexer value that
selects the signal's branch, so one message serves many features and a frame
for one feature never touches another. Every other signal the frame needs must
be a multiplexer; anything else is refused when the items file is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import can
import cantools
from cantools.database.can import Database, Message

from agent.errors import ConfigurationError
from update_agent.remote_config.items import Catalog, ConfigItem
from update_agent.version_frame import load_dbc


@dataclass(frozen=True)
class FrameSpec:
    message: Message
    signal: str
    #: multiplexer signal -> the value selecting the item's branch
    selectors: dict[str, int]

    def frame(self, value: int) -> can.Message:
        """The frame that sets the item to ``value``."""
        data = self.message.encode({**self.selectors, self.signal: value}, scaling=False, strict=True)
        return can.Message(arbitration_id=self.message.frame_id, data=data,
                           is_extended_id=self.message.is_extended_frame, is_fd=self.message.is_fd)


@cache
def load_database(path: Path) -> Database:
    """The DBC once per process (the benchmark and the daemon apply many changes)."""
    return load_dbc(path)


def frame_spec(catalog: Catalog, item: ConfigItem) -> FrameSpec:
    """How ``item`` travels; ConfigurationError naming the item's key if the DBC cannot carry it."""
    spec = item.broadcast
    if spec is None:
        raise ConfigurationError(f"item {item.name!r} is not a broadcast item", source=catalog.source)
    key = f"items.{item.name}"
    if catalog.dbc is None:
        raise ConfigurationError("broadcast items need a DBC: set dbc here or version_frames.dbc in the "
                                 "vehicle config", source=catalog.source, key="dbc")
    db = load_database(catalog.dbc)
    try:
        message = db.get_message_by_name(spec.message)
    except KeyError:
        raise ConfigurationError(f"message {spec.message!r} is not in {catalog.dbc}", source=catalog.source,
                                 key=f"{key}.message") from None
    by_name = {s.name: s for s in message.signals}
    signal = by_name.get(spec.signal)
    if signal is None:
        raise ConfigurationError(f"message {spec.message!r} has no signal {spec.signal!r}", source=catalog.source,
                                 key=f"{key}.signal")
    selectors: dict[str, int] = {}
    current = signal
    while current.multiplexer_ids:
        parent = current.multiplexer_signal
        if parent is None or len(current.multiplexer_ids) != 1:
            raise ConfigurationError(f"signal {current.name!r} is not selected by exactly one multiplexer value",
                                     source=catalog.source, key=f"{key}.signal")
        selectors[parent] = current.multiplexer_ids[0]
        current = by_name[parent]
    if signal.length > 8 * item.encoding.size or signal.is_float:
        raise ConfigurationError(f"signal {spec.signal!r} ({signal.length} bits) and the item's encoding "
                                 f"({item.encoding.size} bytes) disagree", source=catalog.source, key=f"{key}.encoding")
    frame = FrameSpec(message=message, signal=spec.signal, selectors=selectors)
    try:
        frame.frame(0)
    except (cantools.database.EncodeError, KeyError, ValueError) as e:
        raise ConfigurationError(f"message {spec.message!r} needs more than the item's signal: {e}",
                                 source=catalog.source, key=f"{key}.message") from e
    return frame


def check_catalog(catalog: Catalog) -> None:
    for item in catalog:
        if item.is_broadcast:
            frame_spec(catalog, item)

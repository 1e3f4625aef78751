"""The ECU side of broadcast configuration: decode the DBC message, hand the values to the core.

A simulated ECU whose ``sim:`` section has ``config_broadcast`` listens to that
DBC message on its bus (the tester sends it once for every ECU concerned, see
:mod:`update_agent.remote_config.broadcast`) and stores each mapped signal in
its configuration DID (:meth:`bench.ecu.bootloader.Bootloader.apply_broadcast`),
where a UDS ReadDataByIdentifier reads it back. The message may be
multiplexed: only the signals of the branch the frame selects are applied.
"""

from __future__ import annotations

import logging
from pathlib import Path

import can

from agent.errors import ConfigurationError
from bench.ecu.bootloader import Bootloader
from bench.ecu.runner import FrameListener
from bench.ecu.simconfig import ConfigBroadcastSim
from update_agent.remote_config.broadcast import load_database

log = logging.getLogger(__name__)


def config_listener(core: Bootloader, cfg: ConfigBroadcastSim, vehicle_dbc: Path | None,
                    ) -> tuple[tuple[int, bool], FrameListener]:
    """The (arbitration id, extended) the ECU listens on, and what it does with a frame."""
    path = cfg.dbc or vehicle_dbc
    if path is None:
        raise ConfigurationError("no dbc here and no version_frames.dbc in the vehicle config",
                                 key=f"ecus.{core.name}.sim.config_broadcast.dbc")
    db = load_database(path)
    try:
        message = db.get_message_by_name(cfg.message)
    except KeyError:
        raise ConfigurationError(f"message {cfg.message!r} is not in {path}",
                                 key=f"ecus.{core.name}.sim.config_broadcast.message") from None
    missing = sorted(set(cfg.signals) - {s.name for s in message.signals})
    if missing:
        raise ConfigurationError(f"message {cfg.message!r} has no signal {missing[0]!r}",
                                 key=f"ecus.{core.name}.sim.config_broadcast.signals")

    def hear(msg: can.Message, now: float) -> None:
        try:
            decoded = message.decode(bytes(msg.data), decode_choices=False, scaling=False)
        except Exception as e:
            log.info("%s: configuration broadcast ignored: %s", core.name, e)
            return
        if not isinstance(decoded, dict):  # pragma: no cover - a single message decodes to a dict
            return
        values = {name: int(value) for name, value in decoded.items() if isinstance(value, int | float)}
        core.apply_broadcast(values, now)

    return (message.frame_id, message.is_extended_frame), hear

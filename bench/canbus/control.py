"""The bench hub's control socket: set and read a channel's fault injection at run time.

One socket per channel, next to the channel's bus socket (``<channel>.ctl``,
see :func:`bench.canbus.paths.control_path`), served with the stack's
JSON-RPC server (:class:`agent.ipc.server.IpcServer`). The hub is a bench
tool, not a daemon of the stack, so its methods are declared here and joined
to the common group (:meth:`~agent.ipc.registry.Protocol.with_groups`), not
listed in :mod:`agent.ipc.protocol`.

``otactl bench bus-faults`` is the command line over it; :func:`set_faults`
and :func:`fault_status` are the same for tests and the torture harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.ipc.declarations import common
from agent.ipc.registry import Group, Method, Protocol
from agent.ipc.schema import Int, ListOf, MapOf, Nullable, Num, Opt, Record, Str
from bench.canbus.faults import KINDS, spec_from_mapping
from bench.canbus.paths import control_path

if TYPE_CHECKING:
    from agent.ipc.server import Call, Handler
    from bench.canbus.hub import _Channel

RATE = Num(minimum=0, maximum=1, doc="probability per frame")
SPEC_FIELDS: dict[str, Any] = {
    **{kind: Opt(RATE) for kind in KINDS},
    "delay_time": Opt(Num(minimum=0, maximum=10, doc="s a delayed frame waits")),
    "ids": Opt(Nullable(ListOf(Int(minimum=0, maximum=0x1FFFFFFF), min_items=1),
                        doc="only these arbitration IDs (null: every frame)")),
    "seed": Opt(Int(minimum=0)),
}
STATUS = Record(
    channel=Str(),
    faults=Record({kind: RATE for kind in KINDS}, delay_time=Num(minimum=0), seed=Int(minimum=0),
                  ids=Nullable(ListOf(Int(minimum=0)))),
    counters=MapOf(Int(minimum=0), doc="frames judged (frames) and faults injected per kind, since start"),
    carried=Int(minimum=0, doc="frames the channel carried"),
)

GROUP = Group(
    "bench_hub",
    Method("bench_hub.faults.set", params=Record(SPEC_FIELDS), result=STATUS,
           doc="Replace the channel's fault setting (omitted rates are 0: {} turns injection off). "
               "The random generator restarts from the seed; the counters keep counting."),
    Method("bench_hub.faults.status", result=STATUS, doc="The channel's fault setting and counters."),
    doc="The bench hub's fault injection, one control socket per channel.",
)
PROTOCOL = Protocol(common.GROUP, GROUP, daemon="bench_hub")


def status_of(channel: _Channel) -> dict[str, Any]:
    return {"channel": channel.name, "faults": channel.faults.spec.as_dict(),
            "counters": channel.faults.counters(), "carried": channel.frames}


def handlers(channel: _Channel) -> dict[str, Handler]:
    async def set_faults(call: Call) -> dict[str, Any]:
        channel.faults.configure(spec_from_mapping(call.params, source=f"bench_hub.faults.set ({channel.name})"))
        return status_of(channel)

    async def status(call: Call) -> dict[str, Any]:
        return status_of(channel)

    return {"bench_hub.faults.set": set_faults, "bench_hub.faults.status": status}


def _call(channel: str, method: str, params: Mapping[str, Any] | None, timeout: float) -> dict[str, Any]:
    from agent.ipc.sync import SyncClient

    with SyncClient(control_path(channel), PROTOCOL, connect_timeout=timeout, call_timeout=timeout) as client:
        result: dict[str, Any] = client.call(method, params)
        return result


def set_faults(channel: str, timeout: float = 10.0, **spec: Any) -> dict[str, Any]:
    """Set the faults of a running hub's ``channel`` (keys of :class:`~bench.canbus.faults.FaultSpec`)."""
    return _call(channel, "bench_hub.faults.set", spec, timeout)


def fault_status(channel: str, timeout: float = 10.0) -> dict[str, Any]:
    return _call(channel, "bench_hub.faults.status", None, timeout)

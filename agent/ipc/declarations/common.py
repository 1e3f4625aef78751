"""What every daemon serves: ping, status, subscriptions, and the lifecycle events.

Served by :class:`agent.ipc.server.IpcServer` itself (``daemon.ping``,
``subscribe``, ``unsubscribe``, a basic ``daemon.status``) and by
:class:`agent.runtime.daemon.Daemon` (a ``daemon.status`` with workers and
details), so a daemon's own group only declares its own methods.
"""

from __future__ import annotations

from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import AnyValue, Enum, Int, ListOf, MapOf, Num, Opt, Record, Str

#: a daemon name, also the stem of its socket file (``dmclient`` -> ``dmclient.sock``)
DAEMON_NAME = Str(pattern=r"[a-z][a-z0-9_-]{0,31}", doc="daemon name")
#: an event name as declared in the protocol
EVENT_NAME = Str(pattern=r"[A-Za-z0-9_.-]{1,128}", doc="event name")
#: lifecycle states of a daemon
DAEMON_STATE = Enum("starting", "ready", "reloading", "stopping")

WORKER = Record(
    name=Str(min_len=1, max_len=128),
    state=Enum("busy", "idle", "stalled", doc="stalled: busy and past its progress deadline"),
    since_progress_s=Num(minimum=0, doc="seconds since the last heartbeat"),
    deadline_s=Num(minimum=0, doc="the longest a busy worker may go without a heartbeat"),
)

GROUP = Group(
    "common",
    Method(
        "daemon.ping",
        result=Record(daemon=DAEMON_NAME, pid=Int(minimum=1)),
        doc="Liveness check: answered by the event loop itself.",
    ),
    Method(
        "daemon.status",
        result=Record(
            daemon=DAEMON_NAME,
            pid=Int(minimum=1),
            version=Str(),
            state=DAEMON_STATE,
            uptime_s=Num(minimum=0),
            connections=Int(minimum=0),
            workers=ListOf(WORKER),
            details=MapOf(AnyValue(), doc="daemon-specific status"),
        ),
        doc="The daemon's state, its watchdog workers and daemon-specific details.",
    ),
    Method(
        "subscribe",
        params=Record(events=ListOf(EVENT_NAME, min_items=1, max_items=64)),
        result=Record(events=ListOf(EVENT_NAME, doc="every event this connection now receives")),
        doc="Receive the named events on this connection as JSON-RPC notifications.",
    ),
    Method(
        "unsubscribe",
        params=Record(events=Opt(ListOf(EVENT_NAME, max_items=64))),
        result=Record(events=ListOf(EVENT_NAME, doc="every event this connection still receives")),
        doc="Stop receiving the named events (all of them when 'events' is omitted).",
    ),
    Event(
        "daemon.hello",
        params=Record(daemon=DAEMON_NAME, pid=Int(minimum=1), version=Str(),
                      protocol=Str(doc="fingerprint of the daemon's protocol declarations")),
        doc="Sent once to every new connection the access policy accepts, before anything else.",
        subscribable=False,
    ),
    Event(
        "daemon.state",
        params=Record(daemon=DAEMON_NAME, state=DAEMON_STATE, detail=Opt(Str())),
        doc="The daemon's lifecycle state changed (ready, reloading on SIGHUP, stopping).",
    ),
    common=True,
    doc="Served by every daemon.",
)

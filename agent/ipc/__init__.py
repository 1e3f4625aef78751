"""Local IPC of the stack: JSON-RPC 2.0 over Unix sockets, newline-delimited, asyncio.

=========================  ==========================================================
module                     does
=========================  ==========================================================
:mod:`.protocol`           THE registry: every method and event of every daemon
:mod:`.declarations`       per-daemon declarations listed by ``protocol``
:mod:`.registry`           ``Method`` / ``Event`` / ``Group`` / ``Protocol`` mechanics
:mod:`.schema`             the declaration language and its validator
:mod:`.server`             ``IpcServer``: the daemon side
:mod:`.client`             ``IpcClient``: asyncio caller side, reconnecting
:mod:`.subscription`       ``Subscription``: events as an async iterator or a callback
:mod:`.sync`               ``SyncClient``: blocking wrapper for the CLI
:mod:`.error_codes`        JSON-RPC codes, ``OtaError`` <-> wire mapping
:mod:`.jsonrpc`            message codec (pure)
:mod:`.framing`            newline framing with a size cap (pure)
:mod:`.peercred`           SO_PEERCRED and the access policy
:mod:`.listener`           safe socket creation (lock, stale socket, umask, mode)
:mod:`.paths`              runtime directory and socket paths
=========================  ==========================================================
"""

from agent.ipc.client import IpcClient
from agent.ipc.error_codes import AccessDeniedError, MethodNotFoundError, RpcError, SchemaError
from agent.ipc.peercred import AccessPolicy, PeerCred
from agent.ipc.registry import Event, Group, Method, Protocol
from agent.ipc.server import Call, IpcServer
from agent.ipc.subscription import EventMessage, Subscription
from agent.ipc.sync import SyncClient

__all__ = [
    "AccessDeniedError",
    "AccessPolicy",
    "Call",
    "Event",
    "EventMessage",
    "Group",
    "IpcClient",
    "IpcServer",
    "Method",
    "MethodNotFoundError",
    "PeerCred",
    "Protocol",
    "RpcError",
    "SchemaError",
    "Subscription",
    "SyncClient",
]

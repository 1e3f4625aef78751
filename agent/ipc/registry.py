"""Declarations of methods and events, grouped per daemon, and the registry that validates them.

The declarations themselves live in :mod:`agent.ipc.protocol` (and the
per-daemon modules it lists); this module is the mechanics::

    GROUP = Group(
        "dmclient",
        Method("dmclient.download.cancel",
               params=Record(order=Str()),
               result=Record(cancelled=Bool()),
               doc="Cancel a download order; bytes already verified stay in the cache."),
        Event("dmclient.progress",
              params=Record(order=Str(), received=Int(minimum=0)),
              doc="Bytes received so far, at most every 0.5 s per order."),
    )

A daemon group's names must start with ``"<daemon>."``; common groups
(``common=True``) hold what every daemon serves (``daemon.ping``,
``subscribe``...). :meth:`Protocol.for_daemon` gives the view one daemon serves:
the common groups plus its own.

Params are always by name (a :class:`Record`); a method without params takes
``Record()`` (JSON-RPC ``params`` omitted or ``{}``). A method's result is any
:class:`Schema`, :class:`Null` (``null``) when it returns nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, cast

from agent.ipc.error_codes import MethodNotFoundError, SchemaError
from agent.ipc.schema import Null, Record, Schema


@dataclass(frozen=True)
class Method:
    """A request a daemon serves: ``params`` (by name) in, ``result`` out."""

    name: str
    params: Record = field(default_factory=Record)
    result: Schema = field(default_factory=Null)
    doc: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.params, Record):
            raise TypeError(f"method {self.name}: params must be a Record (by-name params)")
        if not isinstance(self.result, Schema):
            raise TypeError(f"method {self.name}: result must be a Schema")


@dataclass(frozen=True)
class Event:
    """A notification a daemon pushes to subscribers.

    ``subscribable=False`` marks events sent without a subscription
    (``daemon.hello``, sent once on every new connection).
    """

    name: str
    params: Record = field(default_factory=Record)
    doc: str = ""
    subscribable: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.params, Record):
            raise TypeError(f"event {self.name}: params must be a Record")


def _check_name(name: str) -> None:
    if not name or name.startswith("rpc.") or any(c.isspace() for c in name):
        # "rpc." is reserved by JSON-RPC 2.0 for system extensions
        raise ValueError(f"bad method/event name {name!r}")


class Group:
    """The methods and events of one daemon (or, with ``common=True``, of every daemon)."""

    def __init__(self, daemon: str, *items: Method | Event, common: bool = False, doc: str = "") -> None:
        self.daemon = daemon
        self.common = common
        self.doc = doc
        self.methods: dict[str, Method] = {}
        self.events: dict[str, Event] = {}
        for item in items:
            if not common and not item.name.startswith(f"{daemon}."):
                raise ValueError(f"group {daemon}: {item.name!r} must start with '{daemon}.'")
            table: dict[str, Any] = self.methods if isinstance(item, Method) else self.events
            if item.name in table:
                raise ValueError(f"group {daemon}: {item.name!r} declared twice")
            table[item.name] = item


class Protocol:
    """A registry of groups: finds declarations and validates messages against them.

    Every ``check_*`` raises :class:`SchemaError` (invalid params / result /
    event params) or :class:`MethodNotFoundError`; messages start with the
    method or event name.
    """

    def __init__(self, *groups: Group, daemon: str | None = None) -> None:
        self.groups = groups
        self.daemon = daemon
        self.methods: dict[str, Method] = {}
        self.events: dict[str, Event] = {}
        for group in groups:
            for name, method in group.methods.items():
                if name in self.methods:
                    raise ValueError(f"method {name!r} declared in two groups")
                self.methods[name] = method
            for name, event in group.events.items():
                if name in self.events:
                    raise ValueError(f"event {name!r} declared in two groups")
                self.events[name] = event

    @property
    def daemons(self) -> list[str]:
        return [g.daemon for g in self.groups if not g.common]

    def for_daemon(self, daemon: str) -> Protocol:
        """The view one daemon serves: the common groups plus the daemon's own."""
        own = [g for g in self.groups if not g.common and g.daemon == daemon]
        if not own:
            raise KeyError(f"no protocol group for daemon {daemon!r} (known: {', '.join(self.daemons)})")
        return Protocol(*[g for g in self.groups if g.common], *own, daemon=daemon)

    def with_groups(self, *groups: Group) -> Protocol:
        """This protocol plus more groups (tests and bench tools declare their own)."""
        return Protocol(*self.groups, *groups, daemon=self.daemon)

    # -- lookup -------------------------------------------------------------------
    def method(self, name: str) -> Method:
        try:
            return self.methods[name]
        except KeyError:
            served = f" served by {self.daemon}" if self.daemon else ""
            raise MethodNotFoundError(f"unknown method {name!r}: not declared in the protocol{served}") \
                from None

    def event(self, name: str) -> Event:
        try:
            return self.events[name]
        except KeyError:
            published = ", ".join(n for n, e in self.events.items() if e.subscribable) or "none"
            who = self.daemon or "the protocol"
            raise SchemaError(f"unknown event {name!r}; {who} publishes: {published}") from None

    # -- validation -------------------------------------------------------------------
    def check_params(self, method: str, params: object) -> dict[str, Any]:
        """Validated params of a call (``None`` counts as ``{}``); raises on an unknown method."""
        decl = self.method(method)
        value: object = {} if params is None else params
        decl.params.validate(value, f"{method}: params")
        return cast(dict[str, Any], value)  # a Record only validates objects

    def check_result(self, method: str, result: object) -> None:
        self.method(method).result.validate(result, f"{method}: result")

    def check_event(self, event: str, params: object) -> dict[str, Any]:
        decl = self.event(event)
        value: object = {} if params is None else params
        decl.params.validate(value, f"{event}: params")
        return cast(dict[str, Any], value)

    # -- export -----------------------------------------------------------------------
    def json_schema(self) -> dict[str, Any]:
        """Every method and event as JSON Schema, for documentation and other-language peers."""
        def entry(decl: Method | Event, **more: Any) -> dict[str, Any]:
            return {"doc": decl.doc, "params": decl.params.json_schema(), **more}

        return {
            "jsonrpc": "2.0",
            "framing": "one JSON object per line (\\n), UTF-8",
            "groups": [
                {
                    "daemon": g.daemon,
                    "common": g.common,
                    "doc": g.doc,
                    "methods": {n: entry(m, result=m.result.json_schema()) for n, m in g.methods.items()},
                    "events": {n: entry(e, subscribable=e.subscribable) for n, e in g.events.items()},
                }
                for g in self.groups
            ],
        }

    @functools.cached_property
    def fingerprint(self) -> str:
        """A short hash of the declarations: two ends with the same fingerprint agree on every message."""
        text = json.dumps(self.json_schema(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

"""The IPC protocol of the stack: every method and event of every daemon, in one registry.

This is the one place to look. Each daemon's declarations are in its own
small module, listed here in :data:`PROTOCOL`:

=============================================  ===============================
module                                         declares
=============================================  ===============================
:mod:`agent.ipc.declarations.common`           ``daemon.ping``, ``daemon.status``,
                                               ``subscribe``, ``unsubscribe``,
                                               events ``daemon.hello``, ``daemon.state``
                                               (served by every daemon)
:mod:`agent.ipc.declarations.dmclient`         ``dmclient.*`` (ota-dmclient)
:mod:`agent.ipc.declarations.dmclient_check`   ``dmclient.check`` (ota-dmclient, Uptane)
=============================================  ===============================

A new daemon adds ``agent/ipc/declarations/<daemon>.py`` with a
:class:`~agent.ipc.registry.Group` and one line below. Both ends validate
every message against these declarations: the client before sending params
and after receiving a result or event, the server after receiving params and
before sending a result or event. ``python -m agent.ipc.protocol`` prints the
whole protocol as JSON Schema.
"""

from __future__ import annotations

import json

from agent.ipc.declarations import common, dmclient, dmclient_check
from agent.ipc.registry import Event, Group, Method, Protocol

__all__ = ["PROTOCOL", "Event", "Group", "Method", "Protocol"]

PROTOCOL = Protocol(
    common.GROUP,
    dmclient.GROUP,
    dmclient_check.GROUP,
)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(PROTOCOL.json_schema(), indent=2))

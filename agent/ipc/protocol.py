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
:mod:`agent.ipc.declarations.dmclient_installed` ``dmclient.installed.*`` (ota-dmclient, Uptane state)
:mod:`agent.ipc.declarations.agent`            ``agent.*`` (ota-agent, the engine)
:mod:`agent.ipc.declarations.update_agent`     ``update_agent.*`` (ota-update-agent)
:mod:`agent.ipc.declarations.hmi_agent`        ``hmi_agent.*`` (ota-hmi-agent)
:mod:`agent.ipc.declarations.system_agent`     ``system_agent.*`` (ota-system-agent)
:mod:`agent.ipc.declarations.ecu_agent`        ``ecu_agent.*`` (ota-ecu-agent, on a Linux ECU)
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

from agent.ipc.declarations import agent as agent_declarations
from agent.ipc.declarations import common, dmclient, dmclient_check, dmclient_installed
from agent.ipc.declarations import ecu_agent as ecu_agent_declarations
from agent.ipc.declarations import hmi_agent as hmi_agent_declarations
from agent.ipc.declarations import system_agent as system_agent_declarations
from agent.ipc.declarations import update_agent as update_agent_declarations
from agent.ipc.registry import Event, Group, Method, Protocol

__all__ = ["PROTOCOL", "Event", "Group", "Method", "Protocol"]

PROTOCOL = Protocol(
    common.GROUP,
    dmclient.GROUP,
    dmclient_check.GROUP,
    dmclient_installed.GROUP,
    agent_declarations.GROUP,
    update_agent_declarations.GROUP,
    hmi_agent_declarations.GROUP,
    system_agent_declarations.GROUP,
    ecu_agent_declarations.GROUP,
)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(PROTOCOL.json_schema(), indent=2))

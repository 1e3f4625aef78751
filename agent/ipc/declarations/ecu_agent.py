"""``ota-ecu-agent``: a Linux ECU's own update agent (independent download, issue 8).

The gateway reaches it over SOME/IP (``update_agent/linux_ecu/service.py``); on the ECU's own
IPC socket it serves only a read-only view of its A/B slots and its newest campaign, for the
bench and a workshop tool.
"""

from __future__ import annotations

from agent.ipc.registry import Group, Method
from agent.ipc.schema import Bool, Enum, Int, MapOf, Nullable, Record, Str

SLOT = Enum("a", "b")
SLOT_INFO = Record(version=Str(max_len=64), sha256=Str(max_len=64), complete=Bool(),
                   doc="what a slot holds (complete: the whole image is written and hash-checked)")
CAMPAIGN = Record(campaign_id=Str(max_len=128), state=Str(max_len=32), bytes_done=Int(minimum=0),
                  bytes_total=Int(minimum=0), error=Str(), doc="the newest campaign (the SOME/IP status field)")

GROUP = Group(
    "ecu_agent",
    Method("ecu_agent.slots", result=Record(running_version=Str(max_len=64), current=SLOT, next=SLOT,
                                            slots=MapOf(SLOT_INFO, key=Str(pattern="[ab]")),
                                            campaign=Nullable(CAMPAIGN)),
           doc="The running slot and version, the slot booted next, each slot's version, the newest campaign."),
    doc="A Linux ECU's update agent: its A/B slots.",
)

"""``ota-system-agent``: preconditions from the vehicle state, and OTA mode.

``system_agent.preconditions.check`` evaluates the configured rules of a phase against
the vehicle state (the DBC signals on the buses, or a state file); a signal with no
value, or a stale one, is unknown and fails its rule, never passes. State changes and
verdict changes are pushed as events. OTA mode is held under a lease: the
engine renews it while it installs; if it stops renewing (it crashed), the lease expires
and the system agent leaves OTA mode by itself (re-enables normal communication and DTC
setting on every bus).
"""

from __future__ import annotations

from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import AnyValue, Bool, Enum, ListOf, MapOf, Nullable, Num, Opt, Record, Str

CAMPAIGN_ID = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", doc="campaign id")
FAILED_RULE = Record(rule=Str(), value=AnyValue(doc="the value seen (null: unknown)"),
                     expected=Str(doc="what the rule wants, e.g. '== 0', 'in [P]'"))
OTA_MODE = Record(
    active=Bool(),
    campaign_id=Nullable(CAMPAIGN_ID),
    lease_expires_at=Nullable(Num(doc="seconds since the epoch")),
    lease_remaining_s=Nullable(Num()),
    errors=ListOf(Str(), doc="functional requests that failed on the last entry / exit, and the ECUs "
                                  "that refused one (NRC) or did not answer"),
)

VERDICT = Record(ok=Bool(), phase=Enum("download", "install"), failed=ListOf(FAILED_RULE),
                 state_source=Str(doc="where the values came from (and which signals are stale or missing)"))
SIGNAL = Record(value=AnyValue(doc="last value received (null: never)"), age_s=Nullable(Num()), stale=Bool(),
                timeout_s=Num(doc="age after which the signal is stale and counts as unknown"))

GROUP = Group(
    "system_agent",
    Method("system_agent.preconditions.check",
           params=Record(phase=Enum("download", "install")),
           result=VERDICT,
           doc="Evaluate the phase's rules now; every failed rule names rule, value seen and expectation."),
    Method("system_agent.state.get",
           result=Record(values=MapOf(AnyValue(), doc="the known signals (stale and missing ones left out)"),
                         source=Str(), problem=Nullable(Str()),
                         signals=MapOf(SIGNAL, doc="CAN source: every configured signal with its age")),
           doc="The vehicle state now."),
    Event("system_agent.state.changed",
          params=Record(values=MapOf(AnyValue()), source=Str(), problem=Nullable(Str())),
          doc="The known vehicle signals changed (a value, or a signal went stale / came back)."),
    Event("system_agent.preconditions.verdict", params=VERDICT,
          doc="A phase's precondition verdict changed (evaluated on every state change)."),
    Method("system_agent.ota_mode.enter",
           params=Record(campaign_id=CAMPAIGN_ID, lease_s=Num(minimum=0.1, maximum=86400)),
           result=OTA_MODE,
           doc="Enter OTA mode: functional CommunicationControl disable and ControlDTCSetting off on every "
               "bus, then functional TesterPresent until exit. Entering again for the same campaign renews. "
               "An ECU refusing either (an NRC) undoes the entry: the result is inactive, errors name the "
               "ECU and the NRC; an ECU not answering is only listed in errors."),
    Method("system_agent.ota_mode.renew",
           params=Record(campaign_id=CAMPAIGN_ID, lease_s=Num(minimum=0.1, maximum=86400)),
           result=OTA_MODE,
           doc="Extend the lease (refused if OTA mode is not held by this campaign)."),
    Method("system_agent.ota_mode.exit",
           params=Record(campaign_id=CAMPAIGN_ID),
           result=OTA_MODE,
           doc="Leave OTA mode: ControlDTCSetting on and CommunicationControl enable on every bus."),
    Method("system_agent.ota_mode.status", result=OTA_MODE, doc="Whether OTA mode is on, for whom, until when."),
    Event("system_agent.ota_mode.changed",
          params=Record(active=Bool(), campaign_id=Opt(Nullable(CAMPAIGN_ID)),
                        reason=Opt(Enum("enter", "enter_refused", "exit", "lease_expired", "restored",
                                        "ended_after_restart"))),
          doc="OTA mode turned on or off (reason says why)."),
    doc="Preconditions and OTA mode.",
)

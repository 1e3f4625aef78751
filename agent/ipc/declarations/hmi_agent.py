"""``ota-hmi-agent``: driver consent for a campaign, and what the display shows.

A consent request carries the offer (versions, ECUs, size, estimated install time,
release notes, what the driver cannot do meanwhile, mandatory and deadline). The
configured policy answers at once (``auto_accept``: bench and workshop), schedules it
for the next maintenance window (``maintenance_window``) or leaves it ``pending``
until an answer arrives (``ask``: ``otactl consent accept|postpone|schedule|decline``,
``otactl hmi``, later the head unit). Postponed offers are asked again after the
configured interval, scheduled ones are accepted when their window opens, a mandatory
offer past its deadline proceeds at the next maintenance window. Every decision is
persisted with its time and source (the audit trail), so a restarted HMI agent, or
an engine asking again after its own restart, gets the same answer.

The engine pushes the campaign's phase, progress per ECU and result
(``hmi_agent.display``); the HMI agent keeps one view per campaign and publishes it
whole (``hmi_agent.display.changed``) for the display bindings.
"""

from __future__ import annotations

from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import AnyValue, Bool, Enum, Int, ListOf, MapOf, Nullable, Num, Opt, Record, Str

CAMPAIGN_ID = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", doc="campaign id")
DECISION = Enum("accepted", "postponed", "scheduled", "declined", "pending")
ANSWER = Enum("accepted", "postponed", "scheduled", "declined")
POLICY = Enum("auto_accept", "ask", "maintenance_window")
SOURCE = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,63}", doc="who decided: policy:auto_accept, cli:root...")
WINDOW = Str(max_len=128, doc="HH:MM-HH:MM (daily, local time) or an ISO 8601 interval START/END")
OFFER = Record(
    from_version=Str(max_len=64),
    to_version=Str(max_len=64),
    ecus=ListOf(Str(max_len=64), max_items=256),
    size_bytes=Int(minimum=0),
    est_install_s=Num(minimum=0),
    release_notes=Opt(Str(max_len=16384)),
    restrictions=Opt(ListOf(Str(max_len=256), max_items=32, doc="what the driver cannot do during the install")),
    mandatory=Opt(Bool()),
    deadline=Opt(Num(minimum=0, doc="seconds since the epoch after which a mandatory update proceeds")),
    doc="what the driver is asked to accept",
)
AUDIT_ENTRY = Record(
    at=Num(minimum=0, doc="seconds since the epoch"),
    campaign_id=CAMPAIGN_ID,
    decision=DECISION,
    source=SOURCE,
    detail=Nullable(Str()),
)
CONSENT = Record(
    campaign_id=CAMPAIGN_ID,
    decision=DECISION,
    source=SOURCE,
    decided_at=Nullable(Num(minimum=0), doc="when the current decision was taken (null while pending)"),
    offer=MapOf(AnyValue()),
    postponements=Int(minimum=0),
    window=Opt(Nullable(WINDOW)),
    not_before=Opt(Nullable(Num(minimum=0), doc="postponed until / the scheduled window opens")),
    mandatory=Opt(Bool()),
    deadline=Opt(Nullable(Num(minimum=0))),
)
RULES = Record(postpone_limit=Int(minimum=0), postpone_interval=Num(minimum=0),
               maintenance_windows=ListOf(WINDOW), mandatory=Bool(), deadline_after=Nullable(Num(minimum=0)))
PROGRESS = Record(step=Nullable(Str(max_len=64)), bytes_done=Opt(Int(minimum=0)), bytes_total=Opt(Int(minimum=0)),
                  percent=Opt(Num(minimum=0, maximum=100)))
VIEW = Record(
    campaign_id=CAMPAIGN_ID,
    consent=Nullable(CONSENT),
    phase=Nullable(Str(max_len=64)),
    text=Nullable(Str(max_len=4096)),
    progress=MapOf(PROGRESS, doc="per ECU; the key '' is the download of every image"),
    result=Nullable(Str(max_len=64)),
    detail=Nullable(Str(max_len=4096)),
    doc="what the display shows of one campaign",
)

GROUP = Group(
    "hmi_agent",
    Method("hmi_agent.consent.request",
           params=Record(campaign_id=CAMPAIGN_ID, offer=OFFER),
           result=CONSENT,
           doc="Offer a campaign; decided by the policy or left pending ('ask'). Asking again returns the "
               "recorded decision (moved on by time: a postponement that ran out is pending again)."),
    Method("hmi_agent.consent.answer",
           params=Record(campaign_id=Opt(CAMPAIGN_ID),  # default: the one open offer
                         decision=ANSWER, source=Opt(SOURCE), window=Opt(WINDOW)),
           result=CONSENT,
           doc="The driver's (or an engineer's) answer to an open offer; 'scheduled' takes a window."),
    Method("hmi_agent.consent.status",
           params=Record(campaign_id=Opt(CAMPAIGN_ID), audit_limit=Opt(Int(minimum=0, maximum=10000))),
           result=Record(policy=POLICY, consents=ListOf(CONSENT), audit=ListOf(AUDIT_ENTRY), rules=Opt(RULES)),
           doc="Offers (newest first) and the audit trail (newest first), of one campaign or all."),
    Method("hmi_agent.display",
           params=Record(campaign_id=CAMPAIGN_ID, text=Opt(Str(max_len=4096)),
                         progress=Opt(Num(minimum=0, maximum=100, doc="percent")),
                         phase=Opt(Str(max_len=64)), ecu=Opt(Nullable(Str(max_len=64))),
                         step=Opt(Str(max_len=64)), bytes_done=Opt(Int(minimum=0)), bytes_total=Opt(Int(minimum=0)),
                         result=Opt(Str(max_len=64)), detail=Opt(Str(max_len=4096))),
           doc="Show a campaign's state to the driver: text, phase, progress of an ECU (null: the download), "
               "result. Kept in the campaign's view and published as hmi_agent.display.changed."),
    Method("hmi_agent.display.get",
           params=Record(),
           result=Record(views=ListOf(VIEW)),
           doc="The views the display shows now (open offers and the last campaigns), oldest first."),
    Event("hmi_agent.consent.changed",
          params=Record(campaign_id=CAMPAIGN_ID, decision=DECISION, source=SOURCE),
          doc="A consent decision was taken (or an offer is pending)."),
    Event("hmi_agent.display.changed", params=VIEW,
          doc="A campaign's view changed (offer, decision, phase, progress, result): the whole view."),
    doc="Driver consent and display.",
)

"""``ota-hmi-agent``: driver consent for a campaign, and what the display shows.

A consent request carries the offer (versions, ECUs, size, estimated install time,
release notes). The configured policy answers at once (``auto_accept``: bench and
workshop) or leaves it ``pending`` until an answer arrives (``ask``: ``otactl consent
accept|postpone|decline``, later the terminal HMI and the head unit). Every decision is
persisted with its time and source (the audit trail), so a restarted HMI agent, or an
engine asking again after its own restart, gets the same answer.
"""

from __future__ import annotations

from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import AnyValue, Enum, Int, ListOf, MapOf, Nullable, Num, Opt, Record, Str

CAMPAIGN_ID = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", doc="campaign id")
DECISION = Enum("accepted", "postponed", "declined", "pending")
ANSWER = Enum("accepted", "postponed", "declined")
SOURCE = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,63}", doc="who decided: policy:auto_accept, cli:root...")
OFFER = Record(
    from_version=Str(max_len=64),
    to_version=Str(max_len=64),
    ecus=ListOf(Str(max_len=64), max_items=256),
    size_bytes=Int(minimum=0),
    est_install_s=Num(minimum=0),
    release_notes=Opt(Str(max_len=16384)),
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
)

GROUP = Group(
    "hmi_agent",
    Method("hmi_agent.consent.request",
           params=Record(campaign_id=CAMPAIGN_ID, offer=OFFER),
           result=CONSENT,
           doc="Offer a campaign; answered by the policy or left pending ('ask'). Asking again returns "
               "the recorded decision (a postponed offer is asked again: pending)."),
    Method("hmi_agent.consent.answer",
           params=Record(campaign_id=Opt(CAMPAIGN_ID),  # default: the one pending offer
                         decision=ANSWER, source=Opt(SOURCE)),
           result=CONSENT,
           doc="The driver's (or an engineer's) answer to a pending or postponed offer."),
    Method("hmi_agent.consent.status",
           params=Record(campaign_id=Opt(CAMPAIGN_ID), audit_limit=Opt(Int(minimum=0, maximum=10000))),
           result=Record(policy=Enum("auto_accept", "ask"), consents=ListOf(CONSENT), audit=ListOf(AUDIT_ENTRY)),
           doc="Offers (newest first) and the audit trail (newest first), of one campaign or all."),
    Method("hmi_agent.display",
           params=Record(campaign_id=CAMPAIGN_ID, text=Str(max_len=4096),
                         progress=Opt(Num(minimum=0, maximum=100, doc="percent"))),
           doc="Show a campaign's state to the driver (logged; the terminal HMI comes with issue 7)."),
    Event("hmi_agent.consent.changed",
          params=Record(campaign_id=CAMPAIGN_ID, decision=DECISION, source=SOURCE),
          doc="A consent decision was taken (or an offer is pending)."),
    doc="Driver consent and display.",
)

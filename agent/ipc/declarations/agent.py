"""``ota-agent``: the engine. Campaigns: check, update, install, cancel, rollback, status, history.

A campaign moves the vehicle from one vehicle software version to the next (see
:mod:`agent.engine.campaign`). ``agent.update`` / ``agent.install`` / ``agent.rollback``
start one and answer its id at once; the campaign runs in the engine and reports through
the events ``agent.campaign.state`` (every phase change and the end) and
``agent.campaign.progress`` (bytes of the download and of each ECU's flash, relayed
from dmclient and the update agent) and ``agent.campaign.step`` (each journal
transition). A refused request (a campaign already running, a cancel outside a safe
point) is an error of the vehicle-state branch saying why.
"""

from __future__ import annotations

from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import AbsPath, Bool, Enum, Int, ListOf, MapOf, Nullable, Num, Opt, Record, Str

CAMPAIGN_ID = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", doc="campaign id")
ECU = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", doc="ECU name")
VERSION = Nullable(Str(max_len=64), doc="vehicle software version")
RESULT = Nullable(Enum("succeeded", "nothing", "rolled_back", "partial", "failed", "cancelled", "postponed",
                       "declined"))
ECU_STATE = Record(
    outcome=Str(doc="pending | installing | installed | flash_failed | rolling_back | rolled_back | "
                    "rollback_failed | interrupted | untouched"),
    attempts=Int(minimum=0),
    job_id=Nullable(Str()),
    step=Nullable(Str(doc="the flash-script step running now")),
    bytes_done=Int(minimum=0),
    bytes_total=Int(minimum=0),
    note=Opt(Nullable(Str(doc="how a rolled-back ECU was rolled back: 'rolled back: bank switched', "
                              "'rolled back: already on previous bank' or 'rolled back: previous image "
                              "reflashed'"))),
)
CAMPAIGN = Record(
    id=CAMPAIGN_ID,
    kind=Enum("update", "install", "rollback", "configuration",
              doc="configuration: a configuration change and no ECU image (a configuration-only release)"),
    from_version=VERSION,
    to_version=VERSION,
    state=Enum("running", "ended"),
    phase=Str(doc="the step running now (check, download, consent, preconditions, ota_mode_on, flash, "
                  "configure, verify, configure_rollback, rollback, verify_rollback, ota_mode_off, report) or done"),
    ending=Nullable(Str(doc="why the campaign is on its failure path")),
    attempts=Int(minimum=1, doc="1 + times the engine took the campaign up again after a restart"),
    cancel_requested=Bool(),
    created=Num(minimum=0),
    ended=Nullable(Num(minimum=0)),
    result=RESULT,
    detail=Nullable(Str()),
    ecus=MapOf(ECU_STATE, doc="per ECU of the assignment"),
)

GROUP = Group(
    "agent",
    Method("agent.status",
           result=Record(state=Enum("idle", "running"), campaign=Nullable(CAMPAIGN),
                         last=Nullable(CAMPAIGN, doc="the last campaign that ended")),
           doc="The running campaign (phase, versions, per-ECU state and progress), or idle and the last result."),
    Method("agent.check",
           result=Record(status=Enum("update", "nothing"), vehicle_version=VERSION,
                         target_vehicle_version=VERSION,
                         ecus=ListOf(Record(ecu=ECU, software_version=Str(), length=Int(minimum=0),
                                            release=Str())),
                         matched=Bool(doc="whether the ECU versions matched a vehicle version of the baseline"),
                         kind=Opt(Enum("software", "configuration",
                                       doc="configuration: a configuration change only (the version stays)")),
                         config=Opt(MapOf(Str(), doc="the configuration change: item -> value"))),
           doc="Read ECU versions, match the baseline, run the Uptane check; nothing is installed."),
    Method("agent.update", params=Record(yes=Opt(Bool(doc="skip the driver's consent (bench, workshop)"))),
           result=Record(campaign_id=CAMPAIGN_ID),
           doc="Start a campaign: check, download, consent, preconditions, OTA mode, install, verify, report."),
    Method("agent.install", params=Record(release_dir=AbsPath(), yes=Opt(Bool()),
                                          release=Opt(Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}",
                                                          doc="which release of the directory (when several)"))),
           result=Record(campaign_id=CAMPAIGN_ID),
           doc="Start a campaign from a local release directory built by 'otactl release build'."),
    Method("agent.cancel", result=Record(campaign_id=CAMPAIGN_ID, detail=Str()),
           doc="Cancel the running campaign at a safe point (before OTA mode, or between ECUs with rollback); "
               "refused elsewhere with the reason."),
    Method("agent.rollback", params=Record(yes=Opt(Bool())), result=Record(campaign_id=CAMPAIGN_ID),
           doc="Roll the vehicle back to the previous vehicle version with the journal's previous images."),
    Method("agent.history", params=Record(limit=Opt(Int(minimum=1, maximum=1000))),
           result=Record(campaigns=ListOf(CAMPAIGN)),
           doc="Campaigns, newest first."),
    Event("agent.campaign.state",
          params=Record(campaign_id=CAMPAIGN_ID, state=Str(doc="the phase, or 'done'"),
                        result=Opt(RESULT), detail=Opt(Nullable(Str())), ending=Opt(Nullable(Str()))),
          doc="A campaign entered a phase, or ended (state 'done' with its result)."),
    Event("agent.campaign.progress",
          params=Record(campaign_id=CAMPAIGN_ID, ecu=Nullable(ECU), step=Str(), bytes_done=Int(minimum=0),
                        bytes_total=Int(minimum=0)),
          doc="Bytes of the download (ecu null: the whole order) or of an ECU's flash / rollback."),
    Event("agent.campaign.step",
          params=Record(campaign_id=CAMPAIGN_ID, step=Str(doc="check, download, ..., flash, rollback, report"),
                        ecu=Nullable(ECU),
                        state=Enum("started", "done", "failed", "interrupted"),
                        job_id=Nullable(Str(doc="the update-agent job of a flash / rollback attempt"))),
          doc="A journal transition: a step attempt was journalled as started (before it runs) or as "
              "ended; sent after the journal row is committed (kill and resume tests wait on it)."),
    doc="The campaign engine.",
)

"""``ota-update-agent``: ECU versions, baseline matching, flash / rollback jobs, functional requests,
remote configuration.

Flash and rollback run as *jobs*: ``update_agent.job.flash`` / ``update_agent.job.rollback``
answer ``{job_id}`` at once and the work runs in the daemon, at most one job per bus at a
time (different buses in parallel). Job ids are chosen by the caller and idempotent: asking
again with the same id and the same request returns the existing job instead of flashing
twice; the same id with a different request is refused (invalid params). Job records
persist across restarts of the update agent; a job that was queued or running when the
daemon died reports ``failed`` with error class ``Interrupted``.
"""

from __future__ import annotations

from agent.ipc.declarations.dmclient import HASHES, LENGTH
from agent.ipc.registry import Event, Group, Method
from agent.ipc.schema import (
    AbsPath,
    AnyValue,
    Bool,
    Enum,
    Int,
    ListOf,
    MapOf,
    Nullable,
    Num,
    Opt,
    Record,
    Str,
)

ECU = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", doc="ECU name from the vehicle config")
BUS = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", doc="bus name from the vehicle config")
JOB_ID = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}",
             doc="caller-chosen job id, e.g. 'campaign-42:engine:flash:1'")
IMAGE_FORMAT = Enum("ihex", "srec", "bin")
JOB_STATE = Enum("queued", "running", "succeeded", "failed", "unknown")
ERROR = Record(
    {"class": Str(doc="error class, e.g. NegativeResponseError, OtaTimeoutError, Interrupted")},
    message=Str(),
    step=Opt(Nullable(Str(doc="the flash-script step that failed"))),
    nrc=Opt(Nullable(Str(pattern=r"0x[0-9a-f]{2}", doc="the negative response code, e.g. '0x72'"))),
    service=Opt(Nullable(Str(pattern=r"0x[0-9a-f]{2}", doc="the UDS service that was refused"))),
    doc="why a job failed",
)
READING = Record(
    answered=Bool(),
    part_number=Nullable(Str()),
    software_version=Nullable(Str()),
    hardware_version=Nullable(Str()),
    serial_number=Nullable(Str()),
    source=Enum("uds", "can-frame", "someip"),
    error=Opt(Nullable(Str(doc="why the ECU counts as not answering, or DIDs it refused"))),
    read_at=Num(minimum=0, doc="seconds since the epoch"),
)
JOB_STATUS = Record(
    job_id=JOB_ID,
    kind=Opt(Enum("flash", "rollback", "linux_download", "linux_install", "linux_rollback")),
    state=JOB_STATE,
    ecu=Nullable(ECU),
    bus=Opt(Nullable(BUS)),
    created_at=Opt(Nullable(Num(minimum=0))),
    started_at=Opt(Nullable(Num(minimum=0))),
    finished_at=Opt(Nullable(Num(minimum=0))),
    result=Opt(Nullable(MapOf(AnyValue(), doc="the structured flash result (steps, timings, NRCs, "
                                              "versions read back)"))),
    error=Opt(Nullable(ERROR)),
)
FUNCTIONAL_REQUEST = Enum("communication_control_disable", "communication_control_enable",
                          "dtc_setting_off", "dtc_setting_on", "tester_present")
FUNCTIONAL_ANSWER = Record(
    bus=BUS, ecu=ECU, request=Str(pattern=r"[0-9a-f]{2,}", doc="hex of the functional payload answered"),
    outcome=Enum("positive", "negative", "no_answer"),
    nrc=Nullable(Int(minimum=0, maximum=0xFF)), nrc_name=Nullable(Str(doc="e.g. 'conditionsNotCorrect'")),
    waited_s=Num(minimum=0, doc="from the request to the answer, or to giving up (the ECU's P2, P2* after 0x78)"),
)

CONFIG_OUTCOME = Record(
    item=Str(), ecu=ECU, previous=Nullable(Str()), wanted=Nullable(Str()), read_back=Nullable(Str()),
    state=Enum("pending", "confirmed", "refused", "not_confirmed", "not_written", "restored", "unchanged",
               "restore_failed"),
    error=Nullable(Str()),
    doc="one ECU of one item in a configuration change",
)
CONFIG_CHANGE = Record(
    state=Enum("applied", "rolled_back", "rollback_failed", "refused"),
    reason=Nullable(Str()),
    versions=MapOf(Str(), doc="ECU -> the software version the gate read"),
    ecus=ListOf(CONFIG_OUTCOME),
    too_old=Opt(MapOf(ListOf(Str(), min_items=2, max_items=2),
                      doc="state 'refused': ECU -> [running version, version needed]")),
)
CAMPAIGN_ID = Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", doc="the engine's campaign id")
INSTANCE = Int(minimum=1, maximum=0xFFFE, doc="the Linux ECU's SOME/IP 'OTA secondary' instance (as the Director "
                                              "signed it; must equal update_agent.linux_ecus)")
SECONDARY_STATUS = Record(
    campaign_id=Str(), state=Str(doc="idle, downloading, downloaded, failed, cancelled, installing, installed, "
                                     "active, rolled_back"),
    bytes_done=Int(minimum=0), bytes_total=Int(minimum=0), running_version=Str(), slot=Str(), error=Str(),
    doc="a Linux ECU's status (the 'status' field of its OTA secondary service)")
CONFIG_VALUE = Record(item=Str(), ecu=ECU, value=Nullable(Str()), raw=Nullable(Str()), error=Nullable(Str()))

GROUP = Group(
    "update_agent",
    Method("update_agent.versions.read",
           params=Record(ecus=Opt(ListOf(ECU, min_items=1, max_items=256))),
           result=Record(ecus=MapOf(READING, doc="per ECU name"), notes=ListOf(Str())),
           doc="Read ECU versions (UDS ReadDataByIdentifier, plus version frames when configured); the "
               "readings are stored in the version store. An ECU that does not answer is reported, "
               "not an error. Without ecus, the Linux ECUs' running versions (SOME/IP) are included."),
    Method("update_agent.baseline.match",
           params=Record(software_baseline=Opt(AbsPath()), hardware_baseline=Opt(AbsPath()), refresh=Opt(Bool())),
           result=Record(matched=Bool(), vehicle_version=Opt(Nullable(Str())), sequence=Opt(Nullable(Int())),
                         report=MapOf(AnyValue())),
           doc="Match the last readings (fresh ones with refresh=true) against the baselines; each "
               "baseline defaults to the configured one (update_agent.baselines)."),
    Method("update_agent.job.flash",
           params=Record(job_id=JOB_ID, ecu=ECU, image_path=AbsPath(), format=IMAGE_FORMAT,
                         base_address=Opt(Int(minimum=0, maximum=0xFFFFFFFFFFFF)),
                         software_version=Opt(Str(min_len=1, max_len=64,
                                                  doc="the software version (F189) inside the image")),
                         length=Opt(LENGTH), hashes=Opt(HASHES)),
           result=Record(job_id=JOB_ID),
           doc="Queue a flash of one ECU with its flash script; answers at once. Same id again: the "
               "existing job. With software_version, an A/B ECU that already runs it is not flashed "
               "(result already_active): its inactive bank holds the previous image, which a second "
               "flash would overwrite. With length and hashes (the verified target's), the image file is "
               "checked against them before it is read: a file changed since its download fails the job "
               "(VerificationError) before a byte goes on the bus."),
    Method("update_agent.job.rollback",
           params=Record(job_id=JOB_ID, ecu=ECU, method=Enum("switch_bank", "reflash"),
                         image_path=Opt(AbsPath()), format=Opt(IMAGE_FORMAT),
                         base_address=Opt(Int(minimum=0, maximum=0xFFFFFFFFFFFF)),
                         expected_version=Opt(Str(min_len=1, max_len=64,
                                                  doc="switch_bank: the software version (F189) the ECU ran "
                                                      "before the update")),
                         length=Opt(LENGTH), hashes=Opt(HASHES)),
           result=Record(job_id=JOB_ID),
           doc="Queue a rollback: switch_bank (A/B ECUs: revert routine 0211 + reset) or reflash "
               "(flash the previous image given by image_path, checked against length and hashes when "
               "given, as for job.flash). With expected_version, switch_bank first "
               "reads the ECU's software version: already on it, the job succeeds without a switch "
               "(result bank_switch 'not_needed', after a reset that settles any pending activation); "
               "else it reverts and the version read back must be expected_version (result bank_switch "
               "'switched')."),
    Method("update_agent.job.status", params=Record(job_id=JOB_ID), result=JOB_STATUS,
           doc="A job's state; 'unknown' for an id never seen (or pruned from the history)."),
    Method("update_agent.functional",
           params=Record(bus=Opt(BUS), request=FUNCTIONAL_REQUEST),
           result=Record(buses=ListOf(BUS), requests=ListOf(Str(doc="hex of each functional request sent")),
                         answers=ListOf(FUNCTIONAL_ANSWER, doc="every expected ECU's answer to each answered "
                                                               "payload (none for TesterPresent)")),
           doc="Send a functionally addressed request on one bus (when omitted: every bus with a "
               "functionally addressable ECU): 0x28 / 0x85 after an extended session request (0x10 0x03), "
               "each awaited until every ECU of the functional address answered or passed its P2 (P2* "
               "after NRC 0x78), or TesterPresent 0x3E 0x80 (suppressed, not answered). An NRC or a "
               "missing answer is reported in answers, never an error."),
    Method("update_agent.config.set",
           params=Record(values=MapOf(Str(min_len=1, max_len=64, doc="the value as text, e.g. 'on', 'sport', '120'"),
                                      doc="configuration item name -> value (configs/bench-config-items.yaml)"),
                         ecus=Opt(ListOf(ECU, min_items=1, max_items=256))),
           result=CONFIG_CHANGE,
           doc="Apply a remote configuration change all or nothing: every ECU concerned must run the items' "
               "minimum software version (else state 'refused', nothing written), previous values are read, "
               "diagnostic items are written per ECU (0x2E) and broadcast items by one DBC frame, every ECU is "
               "read back, and any refusal or mismatch puts every ECU back on its previous value "
               "(state 'rolled_back', or 'rollback_failed' naming the ECUs that are on neither)."),
    Method("update_agent.config.restore",
           params=Record(previous=ListOf(Record(item=Str(min_len=1, max_len=64), ecu=ECU,
                                                value=Str(min_len=1, max_len=64)),
                                         min_items=1, max_items=1024,
                                         doc="the values to put back, as journalled before a change")),
           result=CONFIG_CHANGE,
           doc="Put ECUs back on journalled values: only the ECUs not on them are written (a broadcast item by "
               "one frame when all its ECUs go back to one value, else per ECU over UDS), then every one is "
               "read back. State 'rolled_back', or 'rollback_failed' naming the ECUs on neither value."),
    Method("update_agent.config.get",
           params=Record(items=Opt(ListOf(Str(min_len=1, max_len=64), min_items=1, max_items=256)),
                         ecus=Opt(ListOf(ECU, min_items=1, max_items=256))),
           result=Record(values=ListOf(CONFIG_VALUE)),
           doc="Read the configuration values the ECUs hold (UDS 0x22); an ECU that does not answer is "
               "reported in its entry, not an error."),
    Method("update_agent.job.linux_download",
           params=Record(job_id=JOB_ID, ecu=ECU, instance=Opt(INSTANCE), campaign_id=CAMPAIGN_ID,
                         target=Str(min_len=1, max_len=200), url=Str(pattern=r"https://\S+"),
                         length=Int(minimum=0), hashes=MapOf(Str(pattern=r"[0-9a-f]{64,128}")),
                         software_version=Str(min_len=1, max_len=64),
                         director_targets=AbsPath(doc="the Director targets.json as dmclient verified it"),
                         wrapped_key=Opt(Str(min_len=2, max_len=4096,
                                             doc="an encrypted image (url: its ciphertext): the Director's "
                                                 "encryption spec as JSON, the key wrapped to the ECU's own key"))),
           result=Record(job_id=JOB_ID),
           doc="Queue a Linux ECU's independent download: the order over SOME/IP (the ECU verifies the Director "
               "targets itself and downloads with its own dmclient), then its status notifications until "
               "downloaded (progress as job.progress, step 'download'). Same id again: the existing job."),
    Method("update_agent.job.linux_install",
           params=Record(job_id=JOB_ID, ecu=ECU, instance=Opt(INSTANCE), campaign_id=CAMPAIGN_ID,
                         script=Str(min_len=1, max_len=16 * 1024, doc="the install script handed to the ECU"),
                         software_version=Str(min_len=1, max_len=64, doc="the version it must run after it")),
           result=Record(job_id=JOB_ID),
           doc="Queue a Linux ECU's install: status first (already active on the version: done), else install "
               "(the script writes the inactive slot) and activate; the running version is checked."),
    Method("update_agent.job.linux_rollback",
           params=Record(job_id=JOB_ID, ecu=ECU, instance=Opt(INSTANCE), campaign_id=CAMPAIGN_ID,
                         expected_version=Opt(Str(min_len=1, max_len=64, doc="the version it ran before"))),
           result=Record(job_id=JOB_ID),
           doc="Queue a Linux ECU's rollback to its previous slot (a no-op at the ECU when it runs it already)."),
    Method("update_agent.linux.cancel",
           params=Record(ecu=ECU, instance=Opt(INSTANCE), campaign_id=CAMPAIGN_ID),
           result=SECONDARY_STATUS,
           doc="Cancel a Linux ECU's download of a campaign now (refused by the ECU once installing); its "
               "download job then ends failed."),
    Method("update_agent.linux.status",
           params=Record(ecu=ECU, campaign_id=Opt(CAMPAIGN_ID)),
           result=SECONDARY_STATUS,
           doc="A Linux ECU's status over SOME/IP: of a campaign, or (no campaign_id) its status field now "
               "(running version, slot, the last campaign)."),
    Event("update_agent.job.progress",
          params=Record(job_id=JOB_ID, ecu=ECU, step=Str(), bytes_done=Int(minimum=0),
                        bytes_total=Int(minimum=0), blocks=Int(minimum=0)),
          doc="A running job moved: at most progress_rate events/s per job, plus every step change."),
    Event("update_agent.job.done",
          params=Record(job_id=JOB_ID, ecu=ECU, state=Enum("succeeded", "failed"),
                        result=Opt(Nullable(MapOf(AnyValue()))), error=Opt(Nullable(ERROR))),
          doc="A job ended."),
    doc="Talking to ECUs: versions, baseline match, flash and rollback jobs, functional requests.",
)

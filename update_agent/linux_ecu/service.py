"""The "OTA secondary" SOME/IP service a Linux ECU offers the gateway (interface version 1.0).

Service id 0x4F53 ("OS"), instance id per Linux ECU (bench: 0x0001), found over SOME/IP-SD as
the head-unit service is (:mod:`hmi_agent.someip_service`). Element ids and payloads
(:mod:`agent.someip.serialization`, big-endian); every method goes over TCP (``reliable``: the
order carries the Director targets metadata, larger than a UDP message)::

    method order_download  0x0001   ORDER    -> STATUS
    method status          0x0002   CAMPAIGN -> STATUS
    method cancel          0x0003   CAMPAIGN -> STATUS
    method install         0x0004   INSTALL  -> STATUS
    method activate        0x0005   CAMPAIGN -> STATUS
    method rollback        0x0006   CAMPAIGN -> STATUS
    field  status          getter 0x0010, notifier 0x8001   STATUS   eventgroup 0x0001

``STATUS.state`` is one of :data:`STATES`; ``campaign_id`` "" means no campaign yet. The field is
notified on every state change and on download progress (at most every 0.2 s or 1 %).

A refused call is a SOME/IP ERROR with an application return code (PRS: 0x20..0x5E are the
service's own), see :data:`APP_ERRORS`. An ERROR carries no text: the reason of a refusal is also
kept in the campaign's ``status().error`` (the client appends it to the exception's message); the
next accepted request clears it, unless the campaign failed.
"""

from __future__ import annotations

from dataclasses import replace

from agent.config.node import Node
from agent.someip.discovery import SdConfig
from agent.someip.interface import FieldSpec, MethodSpec, ServiceInterface
from agent.someip.serialization import UINT64, Bytes, String, Struct
from hmi_agent.someip_service import SomeIpSettings, parse_someip

SERVICE_ID = 0x4F53
INSTANCE_ID = 0x0001
MAJOR_VERSION = 1
MINOR_VERSION = 0
EVENTGROUP_STATUS = 0x0001

#: ``STATUS.state`` values
STATES = ("idle", "downloading", "downloaded", "failed", "cancelled", "installing", "installed", "active",
          "rolled_back")

ORDER = Struct(
    ("campaign_id", String()), ("target", String()), ("ecu", String()), ("url", String()), ("length", UINT64),
    ("sha256", String()), ("sha512", String()), ("software_version", String()),
    ("wrapped_key", Bytes()),  # b"": not encrypted; else the dmclient encryption spec as JSON
    ("director_targets", Bytes()),  # the Director's targets.json exactly as signed
    length_field=4, name="Order")
CAMPAIGN = Struct(("campaign_id", String()), name="Campaign")
INSTALL = Struct(("campaign_id", String()), ("script", String()), length_field=4, name="Install")
STATUS = Struct(
    ("campaign_id", String()), ("state", String()), ("bytes_done", UINT64), ("bytes_total", UINT64),
    ("running_version", String()), ("slot", String()), ("error", String()),
    length_field=4, name="Status")

#: application return codes (PRS: 0x20..0x5E service-specific) -> (name, meaning)
APP_ERRORS: dict[int, tuple[str, str]] = {
    0x20: ("E_VERIFICATION", "partial verification of the Director targets metadata failed"),
    0x21: ("E_UNKNOWN_CAMPAIGN", "no such campaign on this ECU"),
    0x22: ("E_WRONG_STATE", "the campaign is not in a state that allows this"),
    0x23: ("E_BUSY", "another campaign is in progress on this ECU"),
    0x24: ("E_BAD_ORDER", "the download order is malformed or not for this ECU"),
    0x25: ("E_BAD_SCRIPT", "the install script is invalid"),
    0x26: ("E_INSTALL_FAILED", "installing into the inactive slot failed"),
    0x27: ("E_ACTIVATE_FAILED", "activating the new slot failed"),
    0x28: ("E_DOWNLOAD_FAILED", "the download could not be ordered"),
    0x2F: ("E_REFUSED", "the request was refused"),
}
E_VERIFICATION, E_UNKNOWN_CAMPAIGN, E_WRONG_STATE, E_BUSY = 0x20, 0x21, 0x22, 0x23
E_BAD_ORDER, E_BAD_SCRIPT, E_INSTALL_FAILED, E_ACTIVATE_FAILED = 0x24, 0x25, 0x26, 0x27
E_DOWNLOAD_FAILED, E_REFUSED = 0x28, 0x2F


def app_error_text(code: int) -> str:
    """``E_VERIFICATION (0x20): partial verification ...`` (or the standard code's number)."""
    name, text = APP_ERRORS.get(code, (f"return code 0x{code:02x}", ""))
    return f"{name} (0x{code:02x})" + (f": {text}" if text else "")


def secondary_interface(service_id: int = SERVICE_ID, instance_id: int = INSTANCE_ID) -> ServiceInterface:
    return ServiceInterface(
        name="ota-secondary", service_id=service_id, instance_id=instance_id, major_version=MAJOR_VERSION,
        minor_version=MINOR_VERSION,
        methods={"order_download": MethodSpec(0x0001, ORDER, STATUS, reliable=True),
                 "status": MethodSpec(0x0002, CAMPAIGN, STATUS, reliable=True),
                 "cancel": MethodSpec(0x0003, CAMPAIGN, STATUS, reliable=True),
                 "install": MethodSpec(0x0004, INSTALL, STATUS, reliable=True),
                 "activate": MethodSpec(0x0005, CAMPAIGN, STATUS, reliable=True),
                 "rollback": MethodSpec(0x0006, CAMPAIGN, STATUS, reliable=True)},
        fields={"status": FieldSpec(STATUS, getter=0x0010, notifier=0x8001, eventgroups=(EVENTGROUP_STATUS,),
                                    reliable=True)},
    )


def parse_service(node: Node) -> SomeIpSettings:
    """``ecu_agent.someip``: the keys of ``hmi_agent.someip`` (address, service_id, instance_id, ports, sd).

    ``enabled`` is accepted and ignored (the ECU agent always offers its service); ``service_id``
    defaults to :data:`SERVICE_ID`.
    """
    explicit = node.has("service_id")
    settings = parse_someip(node)
    return settings if explicit else replace(settings, service_id=SERVICE_ID)


def sd_for(sd: SdConfig, address: str) -> SdConfig:
    """The same SD group, port and timing for another node at ``address``."""
    return SdConfig(local_address=address, group=sd.group, port=sd.port, multicast_interface=sd.multicast_interface,
                    timing=sd.timing)


def status_payload(campaign_id: str = "", state: str = "idle", bytes_done: int = 0, bytes_total: int = 0,
                   running_version: str = "", slot: str = "a", error: str = "") -> dict[str, object]:
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    return {"campaign_id": campaign_id, "state": state, "bytes_done": bytes_done, "bytes_total": bytes_total,
            "running_version": running_version, "slot": slot, "error": error}


"""The head-unit SOME/IP service without sockets: payloads on the wire and back, refusal codes, config."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import ConfigurationError
from agent.runtime.config import load_config
from agent.someip.serialization import UINT32, Struct
from hmi_agent.config import HmiConfig
from hmi_agent.consent import ConsentBook, ConsentError, Rules
from hmi_agent.someip_service import (
    DECISION,
    E_ALREADY_DECIDED,
    E_BAD_WINDOW,
    E_NO_OFFER,
    E_NOT_DECLINABLE,
    E_PAST_DEADLINE,
    E_POSTPONE_LIMIT,
    E_SEVERAL_OFFERS,
    OFFER,
    PROGRESS,
    app_error_text,
    decision_consent,
    decision_payload,
    hmi_interface,
    offer_consent,
    offer_payload,
    progress_payload,
    progress_view,
    refusal_code,
)
from hmi_agent.windows import parse_window

OFFER_JSON = {"from_version": "bv-1.0.0", "to_version": "bv-1.1.0", "ecus": ["engine", "brake"],
              "size_bytes": 5 * 1024 * 1024, "est_install_s": 89.2,
              "release_notes": "Bremsassistent verbessert; ÄÖÜ \u2013 long notes " + "x" * 3000,
              "restrictions": ["the vehicle cannot be started", "no charging"], "mandatory": True,
              "deadline": 1_900_000_000.5}
CONSENT = {"campaign_id": "c-7", "decision": "postponed", "source": "someip:127.0.0.30", "decided_at": 1.0,
           "offer": OFFER_JSON, "postponements": 1, "window": None, "not_before": 1_800_000_000.25,
           "mandatory": True, "deadline": 1_900_000_000.5}


def test_offer_field_carries_what_the_driver_sees_and_decodes_to_the_same_consent() -> None:
    raw = OFFER.encode(offer_payload(CONSENT, postpone_limit=3))
    assert len(raw) > 1400  # the release notes: the field must go over TCP
    assert int.from_bytes(raw[:4], "big") == len(raw) - 4  # PRS: struct length field, big-endian
    value = OFFER.decode(raw)
    assert value["postpone_limit"] == 3 and value["est_install_s"] == 90  # whole seconds, rounded up
    consent = offer_consent(value)
    assert consent is not None
    assert {k: consent[k] for k in ("campaign_id", "decision", "source", "postponements", "not_before", "mandatory",
                                    "deadline", "window")} == {
        "campaign_id": "c-7", "decision": "postponed", "source": "someip:127.0.0.30", "postponements": 1,
        "not_before": 1_800_000_000.25, "mandatory": True, "deadline": 1_900_000_000.5, "window": None}
    assert consent["offer"] == {**OFFER_JSON, "est_install_s": 90}


def test_no_offer_is_an_empty_campaign_id() -> None:
    value = OFFER.decode(OFFER.encode(offer_payload(None, postpone_limit=2)))
    assert value["campaign_id"] == "" and value["decision"] == 0
    assert offer_consent(value) is None


def test_a_newer_minor_version_may_append_members_the_head_unit_skips() -> None:
    newer = Struct(*OFFER.members, ("charging_hint", UINT32), length_field=4, name="OfferV1_1")
    payload = {**offer_payload(CONSENT, postpone_limit=3), "charging_hint": 7}
    assert OFFER.decode(newer.encode(payload)) == offer_payload(CONSENT, postpone_limit=3) | {"est_install_s": 90}


def test_progress_field_round_trip_keeps_bytes_per_ecu_and_the_percent_of_a_download() -> None:
    view = {"campaign_id": "c-7", "phase": "flash", "text": "Flashing engine", "result": None, "detail": None,
            "consent": None,
            "progress": {"": {"step": "download", "bytes_done": 40, "bytes_total": 40},
                         "engine": {"step": "transfer", "bytes_done": 1024, "bytes_total": 4096},
                         "brake": {"step": "verify", "percent": 12.5}}}
    value = PROGRESS.decode(PROGRESS.encode(progress_payload(view)))
    assert [e["percent"] for e in value["ecus"]] == [100.0, 25.0, 12.5]
    assert progress_view(value) == {"phase": "flash", "text": "Flashing engine", "progress": view["progress"]}


def test_decision_answer_round_trip() -> None:
    consent = {**CONSENT, "decision": "scheduled", "window": "02:00-04:00"}
    decoded = decision_consent(DECISION.decode(DECISION.encode(decision_payload(consent))))
    assert decoded == {"campaign_id": "c-7", "decision": "scheduled", "source": "someip:127.0.0.30",
                       "postponements": 1, "window": "02:00-04:00", "not_before": 1_800_000_000.25}


def test_interface_ids_and_transports_are_the_documented_ones() -> None:
    spec = hmi_interface()
    assert (spec.service_id, spec.instance_id, spec.major_version) == (0x4F48, 0x0001, 1)
    assert {n: m.method_id for n, m in spec.methods.items()} == {
        "accept": 0x0001, "postpone": 0x0002, "schedule": 0x0003, "decline": 0x0004}
    assert not any(m.reliable for m in spec.methods.values())
    assert [(f.getter, f.notifier, f.eventgroups, f.reliable) for f in spec.fields.values()] == [
        (0x0010, 0x8001, (0x0001,), True), (0x0011, 0x8002, (0x0002,), True)]
    assert spec.events["result"].event_id == 0x8003 and spec.eventgroups == {0x0001, 0x0002}
    assert hmi_interface(0x1234, 7).service_id == 0x1234


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def refused(book: ConsentBook, campaign_id: str | None, decision: str, window: str | None = None) -> int:
    """The code of an answer the book refuses (it must refuse it)."""
    with pytest.raises(ConsentError):
        book.answer(campaign_id, decision, "someip:127.0.0.30", window=window)
    return refusal_code(book, campaign_id, decision)


def test_each_refusal_of_the_consent_book_has_its_application_error(tmp_path: Path) -> None:
    clock = Clock()
    book = ConsentBook(tmp_path / "hmi.db", "ask", clock=clock, rules=Rules(postpone_limit=1, postpone_interval=0))
    offer: dict[str, Any] = {k: v for k, v in OFFER_JSON.items() if k not in ("mandatory", "deadline")}
    assert refused(book, None, "accepted") == E_NO_OFFER
    book.request("plain", offer)
    book.request("must", {**offer, "mandatory": True, "deadline": clock.now + 100})
    assert refused(book, None, "accepted") == E_SEVERAL_OFFERS
    assert refused(book, "nope", "accepted") == E_NO_OFFER
    assert refused(book, "must", "declined") == E_NOT_DECLINABLE
    book.answer("plain", "postponed", "someip:127.0.0.30")
    book.tick()  # interval 0: asked again at once
    assert refused(book, "plain", "postponed") == E_POSTPONE_LIMIT
    assert refused(book, "plain", "scheduled", "2001-01-01T00:00:00+00:00/2001-01-01T01:00:00+00:00") == E_BAD_WINDOW
    book.answer("plain", "accepted", "someip:127.0.0.30")
    assert refused(book, "plain", "declined") == E_ALREADY_DECIDED
    window = "/".join(datetime.fromtimestamp(t, timezone.utc).isoformat() for t in (clock.now + 900, clock.now + 999))
    book.configure("ask", Rules(postpone_limit=1, postpone_interval=0, maintenance_windows=(parse_window(window),)))
    clock.now += 200  # past the deadline of "must": scheduled by policy for the maintenance window
    book.tick()
    assert refused(book, "must", "postponed") == E_PAST_DEADLINE
    book.close()
    assert app_error_text(E_POSTPONE_LIMIT).startswith("E_POSTPONE_LIMIT (0x22): ")


def write_stack(tmp_path: Path, someip: Any) -> Path:
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump({"hmi_agent": {"db": str(tmp_path / "hmi.db"), "someip": someip}}))
    return path


def test_someip_section_is_off_by_default_and_validated_with_file_and_key(tmp_path: Path) -> None:
    default = load_config(HmiConfig, "hmi_agent", write_stack(tmp_path, {})).someip
    assert not default.enabled and default.service_id == 0x4F48
    good = load_config(HmiConfig, "hmi_agent", write_stack(tmp_path, {
        "enabled": True, "address": "127.0.0.20", "service_id": 0x1234, "instance_id": 2,
        "sd": {"group": "239.1.2.3", "port": 30501, "cyclic_offer_delay": 0.5, "ttl": 2}})).someip
    assert (good.enabled, good.interface.service_id, good.interface.instance_id) == (True, 0x1234, 2)
    assert (good.sd.local_address, good.sd.group, good.sd.port, good.sd.timing.ttl) == ("127.0.0.20", "239.1.2.3",
                                                                                        30501, 2)
    assert good.sd_for("127.0.0.30").local_address == "127.0.0.30"
    for bad, key in (({"address": "head-unit"}, "hmi_agent.someip.address"),
                     ({"sd": {"port": 0}}, "hmi_agent.someip.sd.port"),
                     ({"sd": {"cyclic_offer_delay": 5, "ttl": 3}}, "hmi_agent.someip.sd.cyclic_offer_delay"),
                     ({"service_id": 0xFFFF}, "hmi_agent.someip.service_id"),
                     ({"enable": True}, "hmi_agent.someip")):
        with pytest.raises(ConfigurationError) as info:
            load_config(HmiConfig, "hmi_agent", write_stack(tmp_path, bad))
        assert key in str(info.value) and "stack.yaml" in str(info.value), (bad, str(info.value))

"""The "OTA secondary" payloads on the wire, the install script and the agent's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.errors import ConfigurationError
from agent.runtime.config import load_config
from agent.someip.message import Message, MessageType, ReturnCode
from update_agent.linux_ecu import service
from update_agent.linux_ecu.client import DownloadOrder, SecondaryStatus
from update_agent.linux_ecu.daemon import EcuAgentConfig, Refused, parse_script


def test_an_order_survives_the_wire_byte_for_byte() -> None:
    order = DownloadOrder(campaign_id="c-7", ecu="ivi", target="ivi/ivi-2.0.tar",
                          url="https://127.0.0.1:8443/files/ivi-2.0.tar", length=5 << 30,
                          hashes={"sha256": "ab" * 32, "sha512": "cd" * 64}, software_version="2.0.0",
                          director_targets=b'{"signed": {}}' * 300, wrapped_key=b'{"algorithm": "AES-256-GCM"}')
    wire = service.ORDER.encode(order.payload())
    assert DownloadOrder.from_payload(service.ORDER.decode(wire)) == order
    # big-endian u64 length right after the four strings (each: u32 length, BOM, text, NUL)
    assert (5 << 30).to_bytes(8, "big") in wire
    no_sha512 = DownloadOrder(**{**order.__dict__, "hashes": {"sha256": "ab" * 32}, "wrapped_key": b""})
    assert DownloadOrder.from_payload(service.ORDER.decode(service.ORDER.encode(no_sha512.payload()))) == no_sha512


def test_a_status_survives_the_wire_and_as_json() -> None:
    payload = service.status_payload("c-7", "downloading", 123, 456, "1.0.0", "a", "")
    status = SecondaryStatus.from_payload(service.STATUS.decode(service.STATUS.encode(payload)))
    assert status.to_json() == payload
    with pytest.raises(ValueError, match=r"unknown state 'flashing'"):
        service.status_payload("c-7", "flashing")


def test_the_interface_puts_every_method_on_tcp_with_its_id() -> None:
    iface = service.secondary_interface(instance_id=7)
    assert (iface.service_id, iface.instance_id, iface.major_version) == (0x4F53, 7, 1)
    assert {n: m.method_id for n, m in iface.methods.items()} == {
        "order_download": 1, "status": 2, "cancel": 3, "install": 4, "activate": 5, "rollback": 6}
    assert all(m.reliable for m in iface.methods.values())
    assert iface.event_by_id(0x8001) == ("status", service.STATUS)
    # a refusal is an ERROR message carrying the application code
    request = Message(0x4F53, 1, 0x0301, 1, 1, MessageType.REQUEST, ReturnCode.E_OK, b"")
    error = request.reply(return_code=service.E_VERIFICATION)
    assert (error.message_type, error.return_code) == (MessageType.ERROR, 0x20)
    assert service.app_error_text(0x20).startswith("E_VERIFICATION (0x20): partial verification")


def test_the_install_script_is_checked_before_anything_runs() -> None:
    assert parse_script("- write_slot\n- check\n- set_next\n") == ["write_slot", "check", "set_next"]
    for text, reason in (("- check\n- write_slot\n", "the first step must be write_slot"),
                         ("- write_slot\n- format_disk\n", "step 1: unknown step 'format_disk'"),
                         ("- write_slot\n- write_slot\n", "step 1: write_slot appears twice"),
                         ("write_slot: yes\n", "expected a list of steps"),
                         ("- [unclosed\n", "not YAML")):
        with pytest.raises(Refused, match=reason) as info:
            parse_script(text)
        assert info.value.return_code == service.E_BAD_SCRIPT


def test_the_agent_config_names_file_and_key(tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_text("{}")
    good = tmp_path / "ok.yaml"
    good.write_text(f"ecu_agent: {{ecu: ivi, director_root: {root}, state_dir: {tmp_path / 's'}, "
                    "someip: {address: 127.0.0.30, instance_id: 3}}\n")
    cfg = load_config(EcuAgentConfig, "ecu_agent", good)
    assert (cfg.ecu, cfg.someip.service_id, cfg.someip.instance_id, cfg.fail) == ("ivi", 0x4F53, 3, "none")
    for body, reason in ((f"ecu: ivi, director_root: {tmp_path}/none.json, state_dir: /s",
                          r"ecu_agent.director_root.*no such file"),
                         (f"ecu: ivi, director_root: {root}, state_dir: rel", r"ecu_agent.state_dir.*absolute"),
                         (f"ecu: ivi, director_root: {root}, state_dir: /s, fail: sometimes", r"ecu_agent.fail"),
                         (f"ecu: ivi, director_root: {root}, state_dir: /s, colour: red", r"colour")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"ecu_agent: {{{body}}}\n")
        with pytest.raises(ConfigurationError, match=reason) as info:
            load_config(EcuAgentConfig, "ecu_agent", bad)
        assert "bad.yaml" in str(info.value)

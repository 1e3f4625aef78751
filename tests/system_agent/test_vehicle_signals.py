"""The live vehicle state model (pure, injected clock) and the vehicle simulator's frames, on the bench DBC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import can
import pytest
import yaml

from agent.config.node import Node
from agent.errors import ConfigurationError
from bench.vehicle.scenarios import PARKED, SCENARIOS
from bench.vehicle.simulator import VehicleSimulator, is_transfer_data
from system_agent.ota_signals import PowerHold, honoured
from system_agent.preconditions import Rule, evaluate, parse_rules
from system_agent.signals import SignalModel, SignalSpec
from update_agent.version_frame import load_dbc

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DBC = load_dbc(CONFIGS / "bench-vehicle.dbc")


def bench_install_rules() -> tuple[Rule, ...]:
    doc = yaml.safe_load((CONFIGS / "bench-stack.yaml").read_text())
    return parse_rules(Node(doc["system_agent"]["rules"], source="bench-stack.yaml", path="rules"))["install"]


CONFIG_RULES = bench_install_rules()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def encode(message: str, **signals: Any) -> tuple[int, bytes]:
    m = DBC.get_message_by_name(message)
    return m.frame_id, bytes(m.encode(signals))


def test_frames_decode_to_named_values_with_their_age() -> None:
    clock = Clock()
    model = SignalModel(DBC, clock=clock)
    assert model.values() == {}  # nothing received: every signal unknown
    assert model.feed(*encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="P"))
    assert model.feed(*encode("BATTERY_STATUS", BatteryVoltage=12.8, StateOfCharge=80, Charging=1))
    assert model.feed(*encode("POWER_MODE", Ignition="on"))
    clock.now += 0.25
    values = model.values()
    assert values == {"vehicle_speed": 0, "gear": "P", "battery_voltage": 12.8, "state_of_charge": 80,
                      "charging": True, "ignition": "on"}
    r = model.reading("gear")
    assert (r.value, r.age, r.stale, r.timeout) == ("P", 0.25, False, 0.5)  # 100 ms cycle x 5
    assert not model.feed(0x7E0, b"\x02\x10\x02")  # not a vehicle signal


def test_a_signal_that_stops_arriving_goes_stale_and_counts_as_unknown_never_as_safe() -> None:
    clock = Clock()
    model = SignalModel(DBC, clock=clock)
    rules = CONFIG_RULES
    model.feed(*encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="P"))
    model.feed(*encode("BATTERY_STATUS", BatteryVoltage=12.8, StateOfCharge=80, Charging=0))
    model.feed(*encode("POWER_MODE", Ignition="on"))
    assert evaluate(rules, model.values()).ok
    assert model.next_change() == pytest.approx(0.5)
    clock.now += 0.4
    model.feed(*encode("BATTERY_STATUS", BatteryVoltage=12.8, StateOfCharge=80, Charging=0))
    model.feed(*encode("POWER_MODE", Ignition="on"))
    clock.now += 0.2  # VEHICLE_DYNAMICS last seen 0.6 s ago: stale (its last value was "parked, in P")
    assert model.reading("vehicle_speed").stale and model.reading("vehicle_speed").value == 0
    assert "vehicle_speed" not in model.values() and "gear" not in model.values()
    verdict = evaluate(rules, model.values())
    assert not verdict.ok and {(f.rule, f.value) for f in verdict.failed} == {("parked", None), ("gear", None)}
    model.feed(*encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="P"))  # it comes back: known again
    assert evaluate(rules, model.values()).ok


def test_a_repeated_frame_refreshes_the_age_but_wakes_nobody_a_change_or_a_return_does() -> None:
    clock = Clock()
    model = SignalModel(DBC, clock=clock)
    parked = encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="P")
    assert model.feed(*parked)
    clock.now += 0.3
    assert not model.feed(*parked)  # same bytes: nothing new for the listeners
    assert model.reading("gear").age == 0.0  # but the signal is fresh
    assert model.feed(*encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="D"))
    assert model.values()["gear"] == "D"
    clock.now += 1.0  # stale
    assert model.feed(*encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="D"))  # known again: a change
    assert model.values()["gear"] == "D"


def test_a_signal_not_heard_yet_is_no_evidence_until_one_full_timeout_after_listening_began() -> None:
    clock = Clock()
    model = SignalModel(DBC, clock=clock)
    model.listen()
    assert model.settling() == pytest.approx(1.0)  # the doors: 200 ms cycle x 5
    clock.now += 0.3
    model.feed(*encode("VEHICLE_DYNAMICS", VehicleSpeed=0, Gear="P"))
    assert model.settling() == pytest.approx(0.7)
    for message in ("BATTERY_STATUS", "POWER_MODE", "DOOR_STATUS"):
        model.feed(DBC.get_message_by_name(message).frame_id, bytes(8))
    assert model.settling() == 0.0  # everything heard: a verdict needs no wait
    silent = SignalModel(DBC, clock=clock)
    silent.listen()
    clock.now += 1.01
    assert silent.settling() == 0.0 and silent.values() == {}  # a full timeout of silence: unknown, no more waiting


def test_the_next_change_is_when_the_first_fresh_message_goes_stale() -> None:
    clock = Clock()
    model = SignalModel(DBC, clock=clock)  # 100 ms cycles x 5: 0.5 s; the doors' 200 ms x 5: 1.0 s
    assert model.next_change() is None  # nothing known: nothing can go stale
    doors = encode("DOOR_STATUS", DoorDriver=0, DoorPassenger=0, DoorRearLeft=0, DoorRearRight=0, Tailgate=0)
    model.feed(*doors)
    clock.now += 0.3
    model.feed(*encode("POWER_MODE", Ignition="on"))
    assert model.next_change() == pytest.approx(0.5)  # POWER_MODE first; the doors have 0.7 s left
    clock.now += 0.6  # POWER_MODE stale: the doors are next
    assert model.next_change() == pytest.approx(0.1)
    assert set(model.values()) == {"door_driver_open", "door_passenger_open", "door_rear_left_open",
                                   "door_rear_right_open", "tailgate_open"}
    clock.now += 0.2
    assert model.next_change() is None and model.values() == {}
    assert model.feed(*doors)  # the same bytes after a silence: known again, a change
    assert model.next_change() == pytest.approx(1.0)


class CountedDecodes:
    """The bench DBC as the model sees it, with the decodes of one message recorded."""

    def __init__(self, name: str) -> None:
        self.message = DBC.get_message_by_name(name)
        self.decoded: list[bytes] = []

    def get_message_by_name(self, name: str) -> Any:
        return self if name == self.message.name else DBC.get_message_by_name(name)

    def __getattr__(self, attr: str) -> Any:  # the message's frame id, signals, cycle time ...
        return getattr(self.message, attr)

    def decode(self, data: bytes, **options: Any) -> Any:
        self.decoded.append(bytes(data))
        return self.message.decode(data, **options)


def test_a_repeated_frame_is_not_decoded_again() -> None:
    clock = Clock()
    db = CountedDecodes("BATTERY_STATUS")
    model = SignalModel(cast(Any, db), clock=clock)
    full = encode("BATTERY_STATUS", BatteryVoltage=12.8, StateOfCharge=80, Charging=0)
    low = encode("BATTERY_STATUS", BatteryVoltage=11.5, StateOfCharge=80, Charging=0)
    woke = []
    for frame in (full, full, full, low, low, full):
        clock.now += 0.1
        woke.append(model.feed(*frame))
    assert db.decoded == [full[1], low[1], full[1]]  # only the frames whose bytes changed
    assert woke == [True, False, False, True, False, True]
    assert model.values()["battery_voltage"] == 12.8 and model.reading("battery_voltage").age == 0.0


def test_stale_timeout_from_the_cycle_time_or_configured() -> None:
    assert SignalModel(DBC, stale_factor=3).timeouts["tailgate_open"] == pytest.approx(0.6)  # 200 ms cycle
    assert set(SignalModel(DBC, stale_after=2.0).timeouts.values()) == {2.0}


def test_malformed_frames_keep_the_signal_ageing() -> None:
    clock = Clock()
    model = SignalModel(DBC, clock=clock)
    frame_id, _ = encode("POWER_MODE", Ignition="on")
    assert not model.feed(frame_id, b"\x01")  # too short for the message
    assert model.bad_frames == 1 and model.values() == {}


@pytest.mark.parametrize("spec, reason", [
    (SignalSpec("x", "NO_SUCH", "Y"), "not in the DBC"),
    (SignalSpec("x", "POWER_MODE", "Nope"), "has no signal 'Nope'"),
    (SignalSpec("x", "POWER_MODE", "Ignition", "float"), "kind must be"),
])
def test_bad_signal_specs_are_refused(spec: SignalSpec, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        SignalModel(DBC, (spec,))


# -- the vehicle simulator's nodes (pure part: frames at a given time, frames received) ----------------
def sim(tmp_path: Path, scenario: str = "parked", **kw: object) -> tuple[VehicleSimulator, Clock]:
    clock = Clock()
    wall = Clock()
    s = VehicleSimulator({}, DBC, SCENARIOS[scenario], request_ids={0x7E0}, clock=clock, wall_clock=wall,
                         status_file=tmp_path / "status.json", **kw)  # type: ignore[arg-type]
    return s, clock


def decoded(frames: list[can.Message]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in frames:
        m = DBC.get_message_by_frame_id(f.arbitration_id)
        values = m.decode(bytes(f.data))
        assert isinstance(values, dict)
        out[m.name] = dict(values)
    return out


def ota_frame(keep_awake: int = 1) -> can.Message:
    m = DBC.get_message_by_name("OTA_MODE")
    return can.Message(arbitration_id=m.frame_id, is_extended_id=False,
                       data=m.encode({"OtaModeActive": 1, "KeepAwake": keep_awake, "OtaModeCounter": 7}))


def test_the_simulator_sends_the_scenario_and_the_model_reads_it_back(tmp_path: Path) -> None:
    s, clock = sim(tmp_path, "driving")
    frames = s.frames(clock())
    model = SignalModel(DBC, clock=clock)
    for f in frames:
        model.feed(f.arbitration_id, bytes(f.data))
    assert model.values()["vehicle_speed"] == 50 and model.values()["gear"] == "D"
    assert set(model.values()) == set(PARKED)
    assert s.frames(clock()) == []  # nothing due again within the cycle
    clock.now += 0.1
    assert "VEHICLE_DYNAMICS" in decoded(s.frames(clock()))


def test_a_signal_left_out_silences_its_message(tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text("vehicle_speed: 0\ngear: P\nignition: 'on'\nbattery_voltage: 12.8\n")  # no SoC, no charging
    s, clock = sim(tmp_path, state_file=state)
    names = set(decoded(s.frames(clock())))
    assert {"VEHICLE_DYNAMICS", "POWER_MODE"} <= names and "BATTERY_STATUS" not in names


def test_ota_mode_frames_dim_the_head_unit_and_keep_the_battery_lock(tmp_path: Path) -> None:
    s, clock = sim(tmp_path)
    before = decoded(s.frames(clock()))
    assert before["HEADUNIT_STATUS"]["DisplayDimmed"] == 0 and before["BODY_STATUS"]["BatteryLock"] == 0
    s.receive(ota_frame(), clock())
    clock.now += 0.1
    during = decoded(s.frames(clock()))
    assert during["HEADUNIT_STATUS"]["DisplayDimmed"] == 1 and during["BODY_STATUS"]["BatteryLock"] == 1
    clock.now += 0.4  # no OTA-mode frame for 4 cycles: OTA mode is over for the nodes
    after = decoded(s.frames(clock()))
    assert after["HEADUNIT_STATUS"]["DisplayDimmed"] == 0 and after["BODY_STATUS"]["BatteryLock"] == 0
    events = [e for _t, e in json.loads((tmp_path / "status.json").read_text())["events"]]
    assert any(e.startswith("ota mode on: head unit dimmed") for e in events)


def test_ignition_off_mid_update_fires_on_the_first_transfer_and_the_gateway_holds_power(tmp_path: Path) -> None:
    hold = tmp_path / "hold.json"
    s, clock = sim(tmp_path, "ignition_off_mid_update", power_hold_file=hold)
    s.receive(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x02\x10\x02"), clock())
    assert s.values()["ignition"] == "on"
    s.receive(ota_frame(), clock())
    s.receive(can.Message(arbitration_id=0x7E0, is_extended_id=False, data=b"\x18\x02\x36\x01" + b"\0" * 4), clock())
    assert s.values()["ignition"] == "off"
    assert decoded(s.frames(clock()))["GATEWAY_STATUS"]["PowerState"] == "held"  # the KeepAwake frame
    clock.now += 1.0  # the frame is gone; the hold file still holds (a lease until wall time 110)
    PowerHold(hold, wall_clock=lambda: 100.0).hold("c1", 10.0)
    assert decoded(s.frames(clock()))["GATEWAY_STATUS"]["PowerState"] == "held"
    PowerHold(hold).release()
    clock.now += 1.0
    frames = decoded(s.frames(clock()))
    assert frames["GATEWAY_STATUS"]["PowerState"] == "asleep" and "VEHICLE_DYNAMICS" not in frames


def test_the_gateway_ignores_an_expired_power_hold(tmp_path: Path) -> None:
    hold = tmp_path / "hold.json"
    PowerHold(hold, wall_clock=lambda: 100.0).hold("c1", 5.0)
    assert honoured(hold, 104.0) and not honoured(hold, 106.0)
    hold.write_text("not json")
    assert not honoured(hold, 0.0)


def test_transfer_data_detection() -> None:
    assert is_transfer_data(b"\x05\x36\x01\xaa\xbb\xcc")  # single frame
    assert is_transfer_data(b"\x18\x02\x36\x01\0\0\0\0")  # first frame
    assert not is_transfer_data(b"\x21\x36\x36\x36")  # consecutive frame
    assert not is_transfer_data(b"\x03\x22\xf1\x89")



def test_network_reachable_is_probed_and_goes_unknown_when_old() -> None:
    import asyncio
    import socket

    from system_agent.network import NetworkProbe

    clock = Clock()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = NetworkProbe(f"https://127.0.0.1:{port}", interval=2.0, timeout=2.0, clock=clock)
        assert probe.reading() is None  # not probed yet: unknown
        assert probe.settling() == pytest.approx(2.25)  # a verdict may wait for the first probe's answer
        assert probe.record(asyncio.run(probe.probe())) and probe.reading() is True
    closed = NetworkProbe(f"https://127.0.0.1:{port}", interval=2.0, timeout=2.0, clock=clock)
    assert asyncio.run(closed.probe()) is False  # nobody listens any more
    clock.now += 6.5  # three intervals without a probe: the old "reachable" does not stand
    assert probe.reading() is None
    assert probe.settling() == 0.0  # it answered once: unknown now means unknown

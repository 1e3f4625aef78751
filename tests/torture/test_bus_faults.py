"""The bench bus's fault injection: each kind does what it does on CAN, seeded, counted, set at run time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from agent.errors import ConfigurationError
from bench.canbus.control import fault_status, set_faults
from bench.canbus.faults import FaultInjector, FaultSpec, parse_channels, spec_from_mapping
from bench.canbus.hub import HubThread

FRAMES = 400


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hub"
    monkeypatch.setenv("OTA_BENCH_HUB_DIR", str(path))
    return path


@pytest.fixture
def hub(hub_dir: Path) -> Iterator[HubThread]:
    with HubThread(["t"]) as h:
        yield h


def _send_and_collect(count: int = FRAMES, ids: tuple[int, ...] = (0x100,)) -> list[tuple[int, bytes]]:
    """Send ``count`` numbered frames (IDs in turn) from one node; what another node receives, in order.

    The sender finishes with a marker frame on an ID no test injects on (0x7FF) and the
    receiver reads up to it, so no wait depends on time.
    """
    sender = can.Bus(interface="benchhub", channel="t")
    receiver = can.Bus(interface="benchhub", channel="t")
    try:
        for i in range(count):
            sender.send(can.Message(arbitration_id=ids[i % len(ids)], data=i.to_bytes(4, "big"),
                                    is_extended_id=False))
        sender.send(can.Message(arbitration_id=0x7FF, data=b"end", is_extended_id=False))
        got: list[tuple[int, bytes]] = []
        while True:
            msg = receiver.recv(timeout=10)
            assert msg is not None, f"the end marker never arrived ({len(got)} frames so far)"
            if msg.arbitration_id == 0x7FF and bytes(msg.data) == b"end":
                return got
            got.append((msg.arbitration_id, bytes(msg.data)))
    finally:
        sender.shutdown()
        receiver.shutdown()


def _numbers(frames: list[tuple[int, bytes]]) -> list[int]:
    return [int.from_bytes(data, "big") for _, data in frames]


def test_drop_loses_frames_for_every_receiver_at_the_seeded_rate(hub: HubThread) -> None:
    set_faults("t", drop=0.2, seed=7, ids=[0x100])
    got = _numbers(_send_and_collect())
    counters = hub.fault_counters("t")
    assert counters["frames"] == FRAMES and counters["drop"] == FRAMES - len(got)
    assert 40 <= counters["drop"] <= 120  # 20 % of 400, with room for the draw
    assert got == sorted(got)  # what arrives keeps its order
    # the same seed drops the same frames again
    set_faults("t", drop=0.2, seed=7, ids=[0x100])
    assert _numbers(_send_and_collect()) == got
    set_faults("t", drop=0.2, seed=8, ids=[0x100])
    assert _numbers(_send_and_collect()) != got


def test_only_the_named_ids_are_hit(hub: HubThread) -> None:
    set_faults("t", drop=1.0, ids=[0x7E0])
    got = _send_and_collect(ids=(0x7E0, 0x7E8))
    assert {aid for aid, _ in got} == {0x7E8}
    assert _numbers(got) == list(range(1, FRAMES, 2))
    assert hub.fault_counters("t")["drop"] == FRAMES // 2


def test_delay_and_detected_errors_arrive_late_but_whole_and_in_order(hub: HubThread) -> None:
    set_faults("t", delay=0.1, error=0.1, delay_time=0.002, seed=3)
    got = _send_and_collect()
    assert _numbers(got) == list(range(FRAMES))  # nothing lost, nothing reordered, nothing altered
    counters = hub.fault_counters("t")
    assert counters["delay"] > 0 and counters["error"] > 0
    assert counters["drop"] == counters["corrupt"] == 0


def test_corruption_flips_one_data_bit_and_keeps_the_identifier(hub: HubThread) -> None:
    set_faults("t", corrupt=0.25, seed=11, ids=[0x100])
    got = _send_and_collect()
    assert len(got) == FRAMES and {aid for aid, _ in got} == {0x100}
    flipped = 0
    for i, (_, data) in enumerate(got):
        diff = int.from_bytes(data, "big") ^ i
        assert diff & (diff - 1) == 0, f"frame {i}: more than one bit changed"
        flipped += diff != 0
    assert flipped == hub.fault_counters("t")["corrupt"] > 0


def test_a_detected_error_costs_emulated_wire_time(hub_dir: Path) -> None:
    with HubThread(["t"], timing={"t": (500_000, None)}) as clean:
        _send_and_collect(100)
        clean_busy = clean.stats("t")[1]
    with HubThread(["t"], timing={"t": (500_000, None)}, faults={"t": FaultSpec(error=1.0, ids=frozenset({0x100}))}) \
            as faulty:
        assert _numbers(_send_and_collect(100)) == list(range(100))
        busy = faulty.stats("t")[1]
    # every frame went twice, with an error frame between: more than twice the clean wire time
    assert busy > 2 * clean_busy * 100 / 101


def test_the_injector_is_deterministic_per_seed() -> None:
    record = bytes.fromhex("00000100000000000000000000000008") + bytes(8)
    a = FaultInjector(FaultSpec(drop=0.3, corrupt=0.3, seed=5))
    b = FaultInjector(FaultSpec(drop=0.3, corrupt=0.3, seed=5))
    assert [a.judge(record).record for _ in range(200)] == [b.judge(record).record for _ in range(200)]
    assert a.counters() == b.counters() and a.counters()["frames"] == 200


def test_bad_settings_are_refused_with_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"add up to 1\.2"):
        spec_from_mapping({"drop": 0.6, "corrupt": 0.6})
    with pytest.raises(ConfigurationError, match=r"powertrain: unknown key 'dorp'"):
        parse_channels({"powertrain": {"dorp": 0.1}}, source="faults.yaml")
    with pytest.raises(ConfigurationError, match=r"powertrain\.ids.*0x1FFFFFFF"):
        parse_channels({"powertrain": {"ids": ["7E0"]}}, source="faults.yaml")
    with pytest.raises(ConfigurationError, match=r"powertrain\.drop: must be <= 1"):
        parse_channels({"powertrain": {"drop": 2}}, source="faults.yaml")


def _otactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_otactl_sets_and_shows_the_faults_of_a_running_hub(hub: HubThread) -> None:
    done = _otactl("bench", "bus-faults", "--channel", "t", "--drop", "0.5", "--ids", "0x100", "--seed", "2",
                   "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["faults"] == {"drop": 0.5, "delay": 0.0, "error": 0.0, "corrupt": 0.0,
                                                 "delay_time": 0.005, "ids": [0x100], "seed": 2}
    got = _send_and_collect()
    done = _otactl("bench", "bus-faults", "--channel", "t")
    assert done.returncode == 0, done.stderr
    assert "channel t: drop 0.5 (delay 0.005 s, seed 2, 0x100)" in done.stdout
    assert f"judged {FRAMES}, injected: drop {FRAMES - len(got)}," in done.stdout
    done = _otactl("bench", "bus-faults", "--channel", "t", "--off")
    assert done.returncode == 0 and "channel t: off" in done.stdout
    assert fault_status("t")["counters"]["drop"] == FRAMES - len(got)  # the counters stay
    assert len(_send_and_collect()) == FRAMES
    done = _otactl("bench", "bus-faults", "--channel", "nope")
    assert done.returncode != 0 and done.stderr.startswith("error: ") and "nope.ctl" in done.stderr


def test_otactl_bench_bus_starts_with_faults_from_a_file(hub_dir: Path, tmp_path: Path) -> None:
    from bench.readyproc import ReadyProcess

    config = Path(__file__).resolve().parents[2] / "configs" / "bench-vehicle.yaml"
    faults = tmp_path / "faults.yaml"
    faults.write_text("powertrain: {corrupt: 0.01, seed: 4, ids: [0x7E0]}\n")
    proc = ReadyProcess("bus", [sys.executable, "-m", "agent.cli.main", "bench", "bus", "--config", str(config),
                                "--faults", str(faults)], prefix="bench bus ready:", log=tmp_path / "bus.log")
    proc.start(60)
    try:
        status = fault_status("powertrain")
        assert status["faults"]["corrupt"] == 0.01 and status["faults"]["ids"] == [0x7E0]
        assert fault_status("body")["faults"]["corrupt"] == 0.0
    finally:
        proc.stop()
    faults.write_text("chassis: {drop: 0.1}\n")
    done = _otactl("bench", "bus", "--config", str(config), "--faults", str(faults))
    assert done.returncode != 0 and "faults for channel 'chassis'" in done.stderr

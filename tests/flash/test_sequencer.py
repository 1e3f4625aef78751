"""The flash sequencer against an in-memory session: what goes on the bus, in what order,
and what the user is told when a step fails."""

from __future__ import annotations

import dataclasses
import zlib
from datetime import date

import pytest
from flashkit import FakeClock, MemorySession, nrc_error

from agent.config.vehicle import EcuConfig, MemoryConfig, MemoryRegion, VehicleConfig
from agent.errors import (
    ConfigurationError,
    NegativeResponseError,
    OtaTimeoutError,
    VehicleStateError,
    VerificationError,
)
from bench.appimage import build_image
from update_agent.flashscript import load_flash_script
from update_agent.images import FlashImage, Segment
from update_agent.result import ProgressEvent
from update_agent.seedkey import xor_key
from update_agent.sequencer import FlashSequencer, block_counters, fingerprint


def _image(*segments: tuple[int, bytes]) -> FlashImage:
    return FlashImage(source="test.hex", format="ihex",
                      segments=tuple(Segment(a, d) for a, d in segments))


def _sequencer(ecu: EcuConfig, image: FlashImage, clock: FakeClock | None = None,
               events: list[ProgressEvent] | None = None) -> FlashSequencer:
    clock = clock or FakeClock()
    return FlashSequencer(ecu=ecu, script=load_flash_script(ecu.flash_script), image=image, clock=clock,
                          sleep=clock.sleep, today=lambda: date(2024, 3, 7), tester_id=b"BENCH1",
                          progress=None if events is None else events.append)


APP = build_image("1.1.0", "ENG-4711", 5000)


def test_a_single_bank_flash_sends_the_whole_sequence(bench_vehicle: VehicleConfig) -> None:
    engine = bench_vehicle.ecu("engine")
    session = MemorySession()
    result = _sequencer(engine, _image((0x10000, APP))).run(session)
    assert result.ok and result.exit_code == 0
    assert session.methods() == [
        "change_session", "keep_alive", "start_routine", "control_dtc_setting", "communication_control",
        "change_session", "request_seed", "send_key", "write_did", "start_routine",
        "request_download", "transfer_data", "transfer_data", "transfer_data", "request_transfer_exit",
        "start_routine", "start_routine", "keep_alive", "ecu_reset", "tester_present", "keep_alive"]
    assert session.of("change_session") == [(0x03,), (0x02,)]
    # key from the ECU's configured algorithm, for level+1
    assert session.of("send_key") == [(0x02, xor_key(session.seed, 0x01, {"mask": "5A3CC3A5"}))]
    assert session.of("write_did") == [(0xF15A, bytes.fromhex("240307") + b"BENCH1")]
    routines = session.of("start_routine")
    assert routines[0] == (0x0203, b"")
    assert routines[1] == (0xFF00, bytes([0x44]) + (0x10000).to_bytes(4, "big") + (0x80000).to_bytes(4, "big"))
    assert routines[2] == (0x0202, zlib.crc32(APP).to_bytes(4, "big"))
    assert routines[3] == (0xFF01, b"")
    assert session.written == {0x10000: bytearray(APP)}
    assert result.bytes_transferred == 5000 and result.blocks == 3
    assert not session.keep_alive_on


def test_every_segment_gets_its_own_download_with_counters_from_one(bench_vehicle: VehicleConfig) -> None:
    engine = bench_vehicle.ecu("engine")
    first, second = b"\x01" * 5000, b"\x02" * 100
    session = MemorySession(max_block_length=0x0402)  # 1024 data bytes per block
    result = _sequencer(engine, _image((0x10000, first), (0x20000, second))).run(session)
    assert result.ok
    assert session.of("request_download") == [(0x10000, 5000, 4, 4, 0x00), (0x20000, 100, 4, 4, 0x00)]
    assert [c for c, _ in session.of("transfer_data")] == [1, 2, 3, 4, 5, 1]
    assert [n for _, n in session.of("transfer_data")] == [1024, 1024, 1024, 1024, 904, 100]
    assert session.of("request_transfer_exit") == [(), ()]
    assert session.written == {0x10000: bytearray(first), 0x20000: bytearray(second)}
    # CRC over both segments in address order
    assert session.of("start_routine")[2] == (0x0202, zlib.crc32(first + second).to_bytes(4, "big"))


def test_the_block_counter_wraps_from_ff_to_00_across_more_than_256_blocks(
        bench_vehicle: VehicleConfig) -> None:
    engine = bench_vehicle.ecu("engine")
    session = MemorySession(max_block_length=0x12)  # 16 data bytes per block
    data = bytes(range(256)) * 20  # 5120 bytes -> 320 blocks
    result = _sequencer(engine, _image((0x10000, data))).run(session)
    assert result.ok and result.blocks == 320
    counters = [c for c, _ in session.of("transfer_data")]
    assert counters[:3] == [1, 2, 3]
    assert counters[253:258] == [0xFE, 0xFF, 0x00, 0x01, 0x02]
    assert counters == [block_counters()(n) for n in range(320)]
    assert session.written[0x10000] == data


def test_the_block_size_respects_the_script_cap_and_iso_tp(bench_vehicle: VehicleConfig) -> None:
    engine = bench_vehicle.ecu("engine")
    session = MemorySession(max_block_length=0xFFFF)
    _sequencer(engine, _image((0x10000, b"\x00" * 10000))).run(session)
    assert {n for _, n in session.of("transfer_data")} == {4093, 10000 - 2 * 4093}


def test_erase_by_segments_erases_each_span(bench_vehicle: VehicleConfig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "s.yaml"
    script.write_text("family: x\nsteps:\n  - {action: routine, routine: erase, scope: segments}\n"
                      "  - {action: download}\n")
    engine = dataclasses.replace(bench_vehicle.ecu("engine"), flash_script=str(script))
    session = MemorySession()
    _sequencer(engine, _image((0x10000, b"\x01" * 16), (0x30000, b"\x02" * 32))).run(session)
    assert [o for _, o in session.of("start_routine")] == [
        bytes.fromhex("44 00010000 00000010"), bytes.fromhex("44 00030000 00000020")]


def test_only_ab_steps_run_on_ab_ecus(bench_vehicle: VehicleConfig) -> None:
    brake = bench_vehicle.ecu("brake")
    session = MemorySession()
    result = _sequencer(brake, _image((0x20000, APP))).run(session)
    assert result.ok
    assert (0x0210, b"") in session.of("start_routine")
    single = dataclasses.replace(brake, banks="single", flash_script="single_bank")
    session = MemorySession()
    assert _sequencer(single, _image((0x20000, APP))).run(session).ok
    assert (0x0210, b"") not in session.of("start_routine")


def test_a_zero_seed_means_already_unlocked(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(seed=b"\x00\x00\x00\x00")
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(session)
    assert result.ok and session.of("send_key") == []


def test_an_nrc_names_ecu_step_and_code_and_the_ecu_is_reset(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(answers={("start_routine", 0xFF00): nrc_error(0x31, 0x72)})
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(session)
    assert not result.ok
    assert isinstance(result.error, NegativeResponseError)
    assert str(result.error) == "engine: step 'erase' (routine FF00): NRC 0x72 generalProgrammingFailure"
    assert (result.error.service, result.error.nrc) == (0x31, 0x72)
    assert result.exit_code == 4 and result.failed_step == "erase"
    assert "request_download" not in session.methods()  # nothing after the failed step ...
    assert session.methods()[-3:] == ["keep_alive", "ecu_reset", "keep_alive"]  # ... but on_failure
    assert [s.status for s in result.cleanup] == ["ok", "ok"]
    erase = next(s for s in result.steps if s.name == "erase")
    assert erase.status == "failed" and erase.nrcs == {0x72: 1}
    assert [s.status for s in result.steps][-1] == "failed"
    with pytest.raises(NegativeResponseError):
        result.raise_for_error()


def test_a_failing_block_is_named_with_its_counter(bench_vehicle: VehicleConfig) -> None:
    class Failing(MemorySession):
        def transfer_data(self, counter: int, data: bytes) -> None:
            if len(self.of("transfer_data")) == 2:
                self._record("transfer_data", counter, len(data))
                raise nrc_error(0x36, 0x71)
            super().transfer_data(counter, data)

    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(Failing())
    assert str(result.error) == ("engine: step 'download' (TransferData block 3/3 counter 0x03 at 0x00011000): "
                                 "NRC 0x71 transferDataSuspended")
    download = next(s for s in result.steps if s.name == "download")
    assert download.bytes == 4096 and download.blocks == 2


def test_a_crc_mismatch_is_a_verification_error(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(answers={("start_routine", 0x0202): b"\x01"})
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(session)
    assert isinstance(result.error, VerificationError) and result.exit_code == 5
    assert str(result.error).startswith("engine: step 'check_memory' (routine 0202): checkMemory reported "
                                        "status 0x01: CRC-32")


def test_failed_preconditions_are_a_vehicle_state_error(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(answers={("start_routine", 0x0203): b"\x01"})
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(session)
    assert isinstance(result.error, VehicleStateError) and result.exit_code == 6
    assert "change_session" in session.methods() and "request_seed" not in session.methods()


def test_an_ecu_not_answering_is_a_timeout(bench_vehicle: VehicleConfig) -> None:
    session = MemorySession(answers={("change_session", None): OtaTimeoutError(
        "DiagnosticSessionControl: no response within 0.5 s (ECU not answering)")})
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(session)
    assert isinstance(result.error, OtaTimeoutError) and result.exit_code == 3
    assert str(result.error) == ("engine: step 'extended_session' (DiagnosticSessionControl 0x03): "
                                 "DiagnosticSessionControl: no response within 0.5 s (ECU not answering)")
    assert [s.status for s in result.cleanup] == ["ok", "ok"]


def test_wait_for_reset_polls_until_the_ecu_answers(bench_vehicle: VehicleConfig) -> None:
    clock = FakeClock()
    session = MemorySession(deaf_pings=3)
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP)), clock).run(session)
    assert result.ok
    assert session.methods().count("tester_present") == 4
    assert clock.slept == [0.1, 0.1, 0.1]


def test_wait_for_reset_gives_up_after_its_timeout(bench_vehicle: VehicleConfig) -> None:
    clock = FakeClock()
    session = MemorySession(deaf_pings=1000)
    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP)), clock).run(session)
    assert isinstance(result.error, OtaTimeoutError)
    assert "did not come back within 10 s after the reset" in str(result.error)
    assert sum(clock.slept) == pytest.approx(10.0)


def test_progress_and_timings(bench_vehicle: VehicleConfig) -> None:
    clock = FakeClock()
    events: list[ProgressEvent] = []

    class Slow(MemorySession):
        def transfer_data(self, counter: int, data: bytes) -> None:
            clock.now += 0.5
            super().transfer_data(counter, data)

    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP)), clock, events).run(Slow())
    sent = [e.bytes_done for e in events if e.kind == "bytes"]
    assert sent == [2048, 4096, 5000]
    assert all(e.bytes_total == 5000 for e in events)
    started = [e.step for e in events if e.kind == "step_started"]
    assert started[0] == "extended_session" and started[-1] == "wait_for_reset"
    assert result.download_time == pytest.approx(1.5)
    assert result.throughput == pytest.approx(5000 / 1.5)
    download = next(s for s in result.steps if s.name == "download")
    assert download.duration == pytest.approx(1.5) and download.blocks == 3
    data = result.to_dict()
    assert data["ok"] and data["bytes"] == 5000 and data["image"]["crc32"] == f"{zlib.crc32(APP):08x}"


def test_pending_nrcs_and_retries_are_counted_per_step(bench_vehicle: VehicleConfig) -> None:
    class Chatty(MemorySession):
        def start_routine(self, routine_id: int, option: bytes) -> bytes:
            if routine_id == 0xFF00 and self.observer is not None:
                for _ in range(3):
                    self.observer.on_nrc(0x31, 0x78)
            return super().start_routine(routine_id, option)

        def transfer_data(self, counter: int, data: bytes) -> None:
            if counter == 2 and self.observer is not None and len(self.of("transfer_data")) == 1:
                self.observer.on_retry(0x36, 1, "no response")
            super().transfer_data(counter, data)

    result = _sequencer(bench_vehicle.ecu("engine"), _image((0x10000, APP))).run(Chatty())
    steps = {s.name: s for s in result.steps}
    assert steps["erase"].nrcs == {0x78: 3}
    assert steps["download"].retries == 1
    assert result.nrcs() == {0x78: 3}


def test_an_image_outside_the_map_is_refused_before_any_request(bench_vehicle: VehicleConfig) -> None:
    with pytest.raises(ConfigurationError, match="outside the memory map of engine"):
        _sequencer(bench_vehicle.ecu("engine"), _image((0x0, APP)))


def test_fingerprint_is_bcd_date_and_tester_serial() -> None:
    assert fingerprint(date(2031, 12, 24), b"ABCDEF") == bytes.fromhex("311224") + b"ABCDEF"


def test_address_and_length_formats_come_from_the_memory_config(bench_vehicle: VehicleConfig) -> None:
    small = dataclasses.replace(
        bench_vehicle.ecu("engine"),
        memory=MemoryConfig(address_bytes=3, length_bytes=2, data_format=0x11,
                            regions=(MemoryRegion("app", 0x10000, 0x8000),)))
    session = MemorySession()
    assert _sequencer(small, _image((0x10000, APP))).run(session).ok
    assert session.of("request_download") == [(0x10000, 5000, 3, 2, 0x11)]
    assert session.of("start_routine")[1] == (0xFF00, bytes.fromhex("23 010000 8000"))

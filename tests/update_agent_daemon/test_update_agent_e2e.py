"""End to end: ``ota-update-agent`` as a real process, over IPC, against the bench ECUs
(``otactl bench ecus``: real UDS over real ISO-TP frames over the bench hub) in another process."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from uadkit import JOB_TIMEOUT, Rig, flash_params, make_image, vehicle_config, wait_done, wait_until

from agent.ipc.error_codes import SchemaError
from agent.ipc.subscription import EventMessage
from bench.scenario import failing_flash

pytestmark = pytest.mark.e2e

StartRig = Callable[..., Rig]
EVENTS = ("update_agent.job.progress", "update_agent.job.done")


def versions(rig: Rig, *ecus: str) -> dict[str, str]:
    with rig.agent.client() as c:
        answer = c.call("update_agent.versions.read", {"ecus": list(ecus)} if ecus else {})
    return {e: r["software_version"] for e, r in answer["ecus"].items()}


def status(rig: Rig, job_id: str) -> dict[str, Any]:
    with rig.agent.client() as c:
        return dict(c.call("update_agent.job.status", {"job_id": job_id}))


def test_versions_read_over_ipc(start_rig: StartRig) -> None:
    rig = start_rig()
    with rig.agent.client() as c:
        answer = c.call("update_agent.versions.read", {})
        assert {e: r["software_version"] for e, r in answer["ecus"].items()} == {
            "engine": "1.0.0", "brake": "3.4.0", "body": "2.0.0"}
        assert all(r["answered"] for r in answer["ecus"].values())
        # every ECU's part number, also when its newest reading is its version frame (which has none)
        assert {e: r["part_number"] for e, r in answer["ecus"].items()} == {
            "engine": "ENG-4711", "brake": "BRK-0815", "body": "BCM-2201"}
        one = c.call("update_agent.versions.read", {"ecus": ["body"]})
        assert list(one["ecus"]) == ["body"]


def test_jobs_on_two_buses_overlap_and_jobs_on_one_bus_take_turns(start_rig: StartRig) -> None:
    rig = start_rig()
    engine = make_image(rig.root, "engine", "1.1.0")
    brake = make_image(rig.root, "brake", "3.5.0")
    body = make_image(rig.root, "body", "2.1.0")
    seen: list[EventMessage] = []
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        # engine and brake share the powertrain bus; body is alone on the body bus
        for job_id, ecu, image in (("j-engine", "engine", engine), ("j-body", "body", body),
                                   ("j-brake", "brake", brake)):
            assert c.call("update_agent.job.flash", flash_params(job_id, ecu, image)) == {"job_id": job_id}
        done = wait_done(sub, {"j-engine", "j-body", "j-brake"}, seen=seen)
        jobs = {j: c.call("update_agent.job.status", {"job_id": j}) for j in done}
    assert {j: d["state"] for j, d in done.items()} == dict.fromkeys(done, "succeeded")
    assert jobs["j-brake"]["result"]["banks"] == "ab" and jobs["j-engine"]["result"]["banks"] == "single"
    eng, bod, brk = jobs["j-engine"], jobs["j-body"], jobs["j-brake"]
    # different buses ran at the same time: each started before the other finished
    assert bod["started_at"] < eng["finished_at"] and eng["started_at"] < bod["finished_at"]
    # same bus, one after the other, in the order asked
    assert brk["started_at"] >= eng["finished_at"]
    # the events tell the same story: each reported progress before the other one ended
    order = [(e.event, e.params["job_id"]) for e in seen]
    engine_done = order.index(("update_agent.job.done", "j-engine"))
    body_done = order.index(("update_agent.job.done", "j-body"))
    assert ("update_agent.job.progress", "j-body") in order[:engine_done]
    assert ("update_agent.job.progress", "j-engine") in order[:body_done]
    first_brake = next(i for i, (_, j) in enumerate(order) if j == "j-brake")
    assert first_brake > engine_done
    progress = [e.params for e in seen if e.event == "update_agent.job.progress" and e.params["job_id"] == "j-engine"]
    assert progress and all(p["bytes_total"] == 32 * 1024 for p in progress)
    assert versions(rig) == {"engine": "1.1.0", "brake": "3.5.0", "body": "2.1.0"}


def test_job_status_after_the_job_and_idempotent_job_ids(start_rig: StartRig) -> None:
    rig = start_rig()
    image = make_image(rig.root, "body", "2.1.0")
    other = make_image(rig.root, "body", "2.2.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        assert c.call("update_agent.job.status", {"job_id": "never"}) == {
            "job_id": "never", "state": "unknown", "ecu": None}
        c.call("update_agent.job.flash", flash_params("same", "body", image))
        c.call("update_agent.job.flash", flash_params("same", "body", image))  # asked twice: one job
        done = wait_done(sub, {"same"})
        after = c.call("update_agent.job.status", {"job_id": "same"})
        assert after["state"] == "succeeded" and after["ecu"] == "body" and after["kind"] == "flash"
        assert after["result"]["versions_after"]["software_version"] == "2.1.0"
        assert after["result"]["bytes"] == 32 * 1024
        assert done["same"]["result"]["steps"] == after["result"]["steps"]
        # asked again after the end: the finished job, not a second flash
        assert c.call("update_agent.job.flash", flash_params("same", "body", image)) == {"job_id": "same"}
        assert c.call("update_agent.job.status", {"job_id": "same"}) == after
        # the same id for another request is refused, naming the id
        with pytest.raises(SchemaError, match=r"job_id.*already used"):
            c.call("update_agent.job.flash", flash_params("same", "body", other))
        c.call("update_agent.job.flash", flash_params("next", "body", other))
        wait_done(sub, {"next"})
    rig.agent.stop()
    rig.agent.start()  # job records outlive the daemon
    assert status(rig, "same") == after
    assert status(rig, "next")["state"] == "succeeded"


def test_a_failing_flash_reports_step_and_nrc(start_rig: StartRig) -> None:
    rig = start_rig({"body": {"nrc_on_block": {"block": 3, "nrc": 0x72, "times": "always"}}})
    image = make_image(rig.root, "body", "2.1.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("bad", "body", image))
        done = wait_done(sub, {"bad"})["bad"]
        after = c.call("update_agent.job.status", {"job_id": "bad"})
    assert done["state"] == after["state"] == "failed"
    error = after["error"]
    assert error["class"] == "NegativeResponseError"
    assert error["step"] == "download" and error["nrc"] == "0x72" and error["service"] == "0x36"
    assert "body: step 'download'" in error["message"] and "generalProgrammingFailure" in error["message"]
    assert after["result"]["ok"] is False  # the structured result says what ran and what failed


def test_rollback_switch_bank_restores_the_old_version_on_the_ab_ecu(start_rig: StartRig) -> None:
    rig = start_rig()
    image = make_image(rig.root, "brake", "3.5.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("up", "brake", image))
        assert wait_done(sub, {"up"})["up"]["state"] == "succeeded"
        assert versions(rig, "brake") == {"brake": "3.5.0"}
        c.call("update_agent.job.rollback", {"job_id": "back", "ecu": "brake", "method": "switch_bank"})
        done = wait_done(sub, {"back"})["back"]
    assert done["state"] == "succeeded", done
    assert done["result"]["method"] == "switch_bank"
    assert [s["name"] for s in done["result"]["steps"] if s["name"] == "revert"] == ["revert"]
    assert done["result"]["versions_after"]["software_version"] == "3.4.0"
    assert versions(rig, "brake") == {"brake": "3.4.0"}
    assert rig.bench.status("brake")["active_bank"] == "A"


def rollback_switch(c: Any, sub: Any, job_id: str, expected: str | None) -> dict[str, Any]:
    params = {"job_id": job_id, "ecu": "brake", "method": "switch_bank"}
    if expected is not None:
        params["expected_version"] = expected
    c.call("update_agent.job.rollback", params)
    return dict(wait_done(sub, {job_id})[job_id])


def step_names(done: dict[str, Any]) -> list[str]:
    return [s["name"] for s in done["result"]["steps"]]


def test_switch_bank_on_an_ecu_still_on_its_old_bank_succeeds_without_a_switch(start_rig: StartRig) -> None:
    """The bug of a failed A/B flash: it never activated the new bank, so there is nothing to revert.

    The bootloader refuses the revert (the other bank holds an unvalidated image); with the
    version the ECU ran before (expected_version) the job sees it still runs it and succeeds."""
    rig = start_rig({"brake": failing_flash()})
    image = make_image(rig.root, "brake", "3.5.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("up", "brake", image))
        up = wait_done(sub, {"up"})["up"]
        assert up["state"] == "failed" and up["error"]["step"] == "check_memory", up
        assert versions(rig, "brake") == {"brake": "3.4.0"}
        # a blind revert, as before the fix: refused by the bootloader, the ECU is unchanged
        blind = rollback_switch(c, sub, "blind", None)
        assert blind["state"] == "failed" and blind["error"]["step"] == "revert", blind
        # decided by what the ECU runs: no switch needed
        done = rollback_switch(c, sub, "back", "3.4.0")
        assert done["state"] == "succeeded", done
        result = done["result"]
        assert (result["method"], result["bank_switch"], result["running_before"]) == \
            ("switch_bank", "not_needed", "3.4.0")
        assert "revert" not in step_names(done) and "reset" in step_names(done)
        assert result["versions_after"]["software_version"] == "3.4.0"
        # a resumed rollback asks again: still nothing to switch
        again = rollback_switch(c, sub, "back-2", "3.4.0")
        assert again["state"] == "succeeded" and again["result"]["bank_switch"] == "not_needed", again
    assert versions(rig, "brake") == {"brake": "3.4.0"}
    st = rig.bench.status("brake")
    assert (st["active_bank"], st["pending_bank"], st["application_valid"]) == ("A", None, True)


def test_switch_bank_on_an_ecu_running_the_new_image_switches_back_and_verifies(start_rig: StartRig) -> None:
    rig = start_rig()
    image = make_image(rig.root, "brake", "3.5.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("up", "brake", image))
        assert wait_done(sub, {"up"})["up"]["state"] == "succeeded"
        assert rig.bench.status("brake")["active_bank"] == "B"
        done = rollback_switch(c, sub, "back", "3.4.0")
        assert done["state"] == "succeeded", done
        assert (done["result"]["bank_switch"], done["result"]["running_before"]) == ("switched", "3.5.0")
        assert "revert" in step_names(done)
        assert done["result"]["versions_after"]["software_version"] == "3.4.0"
        # run again (a resumed rollback): the ECU is on 3.4.0 now, nothing is switched a second time
        again = rollback_switch(c, sub, "back-2", "3.4.0")
        assert again["state"] == "succeeded" and again["result"]["bank_switch"] == "not_needed", again
    assert versions(rig, "brake") == {"brake": "3.4.0"}
    assert rig.bench.status("brake")["active_bank"] == "A"


def test_switch_bank_does_not_boot_an_older_image_after_a_flash_that_failed_before_its_erase(
        start_rig: StartRig) -> None:
    """Both banks valid (3.4.0 and the running 3.5.0), the next flash fails at its preconditions:
    a blind revert would boot 3.4.0, two versions back; the job keeps 3.5.0."""
    rig = start_rig()
    first = make_image(rig.root, "brake", "3.5.0")
    second = make_image(rig.root, "brake", "3.6.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("up", "brake", first))
        assert wait_done(sub, {"up"})["up"]["state"] == "succeeded"
    rig.bench.stop()  # the ECU's flash keeps its banks; now it refuses to start a programming sequence
    vehicle_config(rig.root, {"brake": {"preconditions_fail": {"times": "always"}}})
    rig.bench.start()
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("up-2", "brake", second))
        up = wait_done(sub, {"up-2"})["up-2"]
        assert up["state"] == "failed" and up["error"]["step"] == "check_preconditions", up
        done = rollback_switch(c, sub, "back", "3.5.0")
        assert done["state"] == "succeeded" and done["result"]["bank_switch"] == "not_needed", done
    assert versions(rig, "brake") == {"brake": "3.5.0"}
    assert rig.bench.status("brake")["active_bank"] == "B"


def test_rollback_reflash_puts_the_previous_image_back_on_a_single_bank_ecu(start_rig: StartRig) -> None:
    rig = start_rig()
    new = make_image(rig.root, "engine", "1.1.0")
    previous = make_image(rig.root, "engine", "1.0.0", size=16 * 1024)
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("up", "engine", new))
        assert wait_done(sub, {"up"})["up"]["state"] == "succeeded"
        assert versions(rig, "engine") == {"engine": "1.1.0"}
        c.call("update_agent.job.rollback", {"job_id": "back", "ecu": "engine", "method": "reflash",
                                             "image_path": str(previous), "format": "ihex"})
        done = wait_done(sub, {"back"})["back"]
    assert done["state"] == "succeeded", done
    assert done["result"]["method"] == "reflash" and done["result"]["bytes"] == 16 * 1024
    assert versions(rig, "engine") == {"engine": "1.0.0"}


def test_sigkill_mid_flash_reports_interrupted_and_the_ecu_can_be_flashed_again(start_rig: StartRig) -> None:
    rig = start_rig()
    big = make_image(rig.root, "engine", "1.1.0", size=256 * 1024)
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("cut", "engine", big))
        while True:  # until the download is under way
            event = sub.get(timeout=JOB_TIMEOUT)
            assert event.event != "update_agent.job.done", f"the job ended before the kill: {event.params}"
            if event.params["step"] == "download" and 0 < event.params["bytes_done"] < 256 * 1024:
                break
        rig.agent.kill()
    rig.agent.start()
    cut = status(rig, "cut")
    assert cut["state"] == "failed"
    assert cut["error"]["class"] == "Interrupted" and "engine" in cut["error"]["message"]
    again = make_image(rig.root, "engine", "1.2.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("again", "engine", again))
        done = wait_done(sub, {"again"})["again"]
    assert done["state"] == "succeeded", done["error"]
    assert versions(rig, "engine") == {"engine": "1.2.0"}


def test_sigterm_lets_the_running_flash_finish_and_leaves_queued_jobs_interrupted(start_rig: StartRig) -> None:
    rig = start_rig()
    engine = make_image(rig.root, "engine", "1.1.0", size=128 * 1024)
    brake = make_image(rig.root, "brake", "3.5.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("running", "engine", engine))
        c.call("update_agent.job.flash", flash_params("queued", "brake", brake))  # same bus: waits
        while sub.get(timeout=JOB_TIMEOUT).params.get("step") != "download":
            pass
        running = c.call("daemon.status")
        assert {w["name"]: w["state"] for w in running["workers"]} == {"bus:powertrain": "busy", "bus:body": "idle"}
        assert running["details"]["buses"] == {"powertrain": {"running": "running", "queued": ["queued"]}}
        assert rig.agent.stop() == 0  # SIGTERM: returns once the running flash is done
    rig.agent.start()
    assert status(rig, "running")["state"] == "succeeded"
    queued = status(rig, "queued")
    assert queued["state"] == "failed" and queued["error"]["class"] == "Interrupted"
    assert "before the flash started" in queued["error"]["message"]
    assert versions(rig) == {"engine": "1.1.0", "brake": "3.4.0", "body": "2.0.0"}


def test_functional_comm_control_and_dtc_setting_reach_every_ecu_of_the_bus(start_rig: StartRig) -> None:
    rig = start_rig()

    def seen(ecu: str) -> tuple[int, str]:
        s = rig.bench.status(ecu)
        return s["communication_control"]["control_type"], s["dtc_setting"]

    with rig.agent.client() as c:
        for request in ("communication_control_disable", "dtc_setting_off"):
            answer = c.call("update_agent.functional", {"bus": "powertrain", "request": request})
            assert answer["buses"] == ["powertrain"]
            # the session change and the request itself, each confirmed by both ECUs of the address
            assert [(a["request"][:2], a["ecu"], a["outcome"]) for a in answer["answers"]] == [
                (sid, ecu, "positive") for sid in ("10", answer["requests"][-1][:2]) for ecu in ("engine", "brake")]
        assert c.call("update_agent.functional", {"bus": "powertrain", "request": "tester_present"})["answers"] == []
        for ecu in ("engine", "brake"):  # both ECUs behind the one functional address
            wait_until(lambda ecu=ecu: seen(ecu) == (0x03, "off"), 10, f"{ecu} quiet")  # type: ignore[misc]
        assert seen("body") == (0x00, "on")  # another bus: untouched
        c.call("update_agent.functional", {"request": "communication_control_disable"})  # every bus
        wait_until(lambda: seen("body")[0] == 0x03, 10, "body quiet")
        for request in ("communication_control_enable", "dtc_setting_on"):
            c.call("update_agent.functional", {"request": request})
        for ecu in ("engine", "brake", "body"):
            wait_until(lambda ecu=ecu: seen(ecu) == (0x00, "on"), 10, f"{ecu} talking")  # type: ignore[misc]


def _raw_call(runtime: Path, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request written by hand on the socket (the client library would refuse to send it)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(runtime / "update_agent.sock"))
        stream = s.makefile("rwb")
        json.loads(stream.readline())  # daemon.hello
        stream.write(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode() + b"\n")
        stream.flush()
        return dict(json.loads(stream.readline()))


def test_bad_params_are_refused_naming_the_field(start_rig: StartRig) -> None:
    rig = start_rig()
    image = make_image(rig.root, "engine", "1.1.0")
    # the schema, checked by the daemon itself
    answer = _raw_call(rig.agent.runtime, "update_agent.job.flash",
                       {"job_id": "x", "ecu": "engine", "image_path": "relative.hex", "format": "ihex"})
    assert answer["error"]["code"] == -32602 and "params.image_path" in answer["error"]["message"]
    answer = _raw_call(rig.agent.runtime, "update_agent.job.flash", {"job_id": "x", "ecu": "engine"})
    assert answer["error"]["code"] == -32602 and "image_path" in answer["error"]["message"]
    answer = _raw_call(rig.agent.runtime, "update_agent.functional", {"request": "reboot_everything"})
    assert answer["error"]["code"] == -32602 and "params.request" in answer["error"]["message"]
    with rig.agent.client() as c:
        with pytest.raises(SchemaError, match=r"params.format"):  # the client refuses to send it
            c.call("update_agent.job.flash", {**flash_params("x", "engine", image), "format": "elf"})
        # what only the daemon knows
        with pytest.raises(SchemaError, match=r"params.ecu: unknown ECU 'gearbox'"):
            c.call("update_agent.job.flash", flash_params("x", "gearbox", image))
        with pytest.raises(SchemaError, match=r"params.image_path: no such file"):
            c.call("update_agent.job.flash", flash_params("x", "engine", rig.root / "missing.hex"))
        with pytest.raises(SchemaError, match=r"params.method: engine is a single-bank ECU"):
            c.call("update_agent.job.rollback", {"job_id": "x", "ecu": "engine", "method": "switch_bank"})
        with pytest.raises(SchemaError, match=r"params.image_path: reflash needs"):
            c.call("update_agent.job.rollback", {"job_id": "x", "ecu": "engine", "method": "reflash"})
        with pytest.raises(SchemaError, match=r"params.expected_version: used by switch_bank only"):
            c.call("update_agent.job.rollback", {"job_id": "x", "ecu": "engine", "method": "reflash",
                                                 "image_path": str(image), "format": "ihex",
                                                 "expected_version": "1.0.0"})
        with pytest.raises(SchemaError, match=r"params.bus: unknown bus 'chassis'"):
            c.call("update_agent.functional", {"bus": "chassis", "request": "tester_present"})
        # nothing refused became a job
        assert c.call("update_agent.job.status", {"job_id": "x"})["state"] == "unknown"
    # an image that only reading it shows to be bad: the job fails before a byte goes on the bus
    broken = rig.root / "broken.hex"
    broken.write_text(image.read_text().replace(":00000001FF", ""))  # no end-of-file record
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", flash_params("broken", "engine", broken))
        done = wait_done(sub, {"broken"})["broken"]
    assert done["state"] == "failed" and done["error"]["class"] == "ConfigurationError"
    assert str(broken) in done["error"]["message"] and done["error"]["step"] is None
    assert rig.bench.status("engine")["session"] == "default"


def test_an_image_changed_since_its_download_is_not_flashed(start_rig: StartRig) -> None:
    """The engine hands over the verified target's length and hashes; a cached file whose bytes no
    longer match them (bit rot, tampering on the board) fails the job before a byte goes on the bus,
    even when it still parses as a good HEX file (its checkMemory CRC would be computed from it)."""
    rig = start_rig()
    good = make_image(rig.root, "engine", "1.1.0")
    digests = {"length": good.stat().st_size, "hashes": {"sha256": hashlib.sha256(good.read_bytes()).hexdigest(),
                                                        "sha512": hashlib.sha512(good.read_bytes()).hexdigest()}}
    other = make_image(rig.root, "engine", "6.6.6")  # well-formed, same size: only the digests tell
    tampered = rig.root / "engine-cached.hex"
    tampered.write_bytes(other.read_bytes())
    assert tampered.stat().st_size == digests["length"]
    before = versions(rig, "engine")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", {**flash_params("tampered", "engine", tampered), **digests})
        c.call("update_agent.job.rollback", {"job_id": "tampered-reflash", "ecu": "engine", "method": "reflash",
                                             "image_path": str(tampered), "format": "ihex", **digests})
        done = wait_done(sub, {"tampered", "tampered-reflash"})
    for job in done.values():
        assert job["state"] == "failed" and job["error"]["class"] == "VerificationError"
        assert "SHA-256 mismatch" in job["error"]["message"] and str(tampered) in job["error"]["message"]
        assert job["error"]["step"] is None
    assert rig.bench.status("engine")["session"] == "default"
    assert versions(rig, "engine") == before
    # the same digests over the untouched file: flashed
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.job.flash", {**flash_params("good", "engine", good), **digests})
        assert wait_done(sub, {"good"})["good"]["state"] == "succeeded"
    assert versions(rig, "engine") == {"engine": "1.1.0"}


def test_baseline_match_uses_the_last_readings_or_fresh_ones(start_rig: StartRig) -> None:
    rig = start_rig()
    sw = str(Path(__file__).resolve().parents[2] / "configs" / "bench-sw-baseline.xml")
    image = make_image(rig.root, "engine", "1.1.0")
    with rig.agent.client() as c, c.subscribe(*EVENTS) as sub:
        c.call("update_agent.versions.read", {})
        before = c.call("update_agent.baseline.match", {"software_baseline": sw})
        assert (before["matched"], before["vehicle_version"], before["sequence"]) == (True, "BV OS D 1.0.0", 1), \
            before["report"]["reasons"]
        c.call("update_agent.job.flash", flash_params("up", "engine", image))
        wait_done(sub, {"up"})
        stale = c.call("update_agent.baseline.match", {"software_baseline": sw})
        assert stale["vehicle_version"] == "BV OS D 1.0.0"  # the stored readings, until asked to refresh
        after = c.call("update_agent.baseline.match", {"software_baseline": sw, "refresh": True})
        assert (after["matched"], after["vehicle_version"], after["sequence"]) == (True, "BV OS D 1.1.0", 2)
        assert {row["ecu"]: row["found_software"] for row in after["report"]["ecus"]}["engine"] == "1.1.0"
        workers = {w["name"]: w["state"] for w in c.call("daemon.status")["workers"]}
        assert workers == {"bus:powertrain": "idle", "bus:body": "idle"}

"""The head unit over SOME/IP: the HMI agent and the head unit as processes, on loopback.

The HMI agent (``ota-hmi-agent``, policy ask, postpone limit 1) offers its head-unit service
at 127.0.0.20 on an SD port and multicast group of this run; the test plays the engine over
IPC (the consent request with the offer, then the campaign's phases, progress and result as
``hmi_agent.display`` calls). The bench head unit (``python -m bench.headunit``, 127.0.0.30)
and ``otactl hmi --someip`` (127.0.0.31) find the service through SOME/IP-SD, see the offer
as a field, answer through the service's methods and receive the progress and the result;
their answers reach the consent book's audit trail with the source ``someip:<address>``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agent.errors import OtaTimeoutError
from agent.ipc.sync import SyncClient
from agent.runtime.supervisor import Supervisor, select_daemons
from bench.readyproc import ReadyProcess, tail

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HMI_ADDRESS, HEAD_UNIT_ADDRESS, OTACTL_ADDRESS = "127.0.0.20", "127.0.0.30", "127.0.0.31"
TIMEOUT = 30.0
OFFER = {"from_version": "bv-1.0.0", "to_version": "bv-1.1.0", "ecus": ["engine", "brake"], "size_bytes": 48 * 1024,
         "est_install_s": 95, "release_notes": "Better brake assist. " * 100,
         "restrictions": ["the vehicle cannot be started"]}
#: (ecu, step, bytes done, bytes total) in the order the engine reports them
PROGRESS = [("", "download", 0, 49152), ("", "download", 16384, 49152), ("", "download", 49152, 49152),
            ("engine", "transfer", 0, 32768), ("engine", "transfer", 8192, 32768), ("engine", "transfer", 32768, 32768),
            ("brake", "transfer", 4096, 16384), ("brake", "transfer", 16384, 16384)]


def sd_port() -> int:
    """A UDP port free on every node address of the test (the SD port all of them share)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HMI_ADDRESS, 0))
            port = int(probe.getsockname()[1])
            try:
                for address in (HEAD_UNIT_ADDRESS, OTACTL_ADDRESS):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                        other.bind((address, port))
            except OSError:
                continue
            return port


@dataclass
class Bench:
    dir: Path
    config: Path
    env: dict[str, str]

    def client(self) -> SyncClient:
        return SyncClient(self.dir / "run" / "hmi_agent.sock", daemon="hmi_agent")

    def logs(self) -> str:
        return tail(self.dir / "run" / "logs" / "hmi_agent.log")

    def offer(self, cid: str) -> None:
        with self.client() as hmi:
            assert hmi.call("hmi_agent.consent.request", {"campaign_id": cid, "offer": OFFER})["decision"] == "pending"

    def wait_decision(self, cid: str, decision: str) -> None:
        with self.client() as hmi, hmi.subscribe("hmi_agent.consent.changed") as changes:
            while hmi.call("hmi_agent.consent.status", {"campaign_id": cid, "audit_limit": 0})[
                    "consents"][0]["decision"] != decision:
                try:
                    changes.get(timeout=TIMEOUT)
                except OtaTimeoutError as e:
                    raise AssertionError(f"{cid} never became {decision}\n{self.logs()}") from e

    def run_campaign(self, cid: str) -> None:
        """The engine's part after the acceptance: phases, progress per ECU, the result."""
        with self.client() as hmi:
            hmi.call("hmi_agent.display", {"campaign_id": cid, "phase": "download", "text": "Downloading"})
            for ecu, step, done, total in PROGRESS:
                if ecu == "engine" and done == 0:
                    hmi.call("hmi_agent.display", {"campaign_id": cid, "phase": "flash", "text": "Installing"})
                hmi.call("hmi_agent.display", {"campaign_id": cid, "ecu": ecu or None, "step": step,
                                               "bytes_done": done, "bytes_total": total})
            hmi.call("hmi_agent.display", {"campaign_id": cid, "phase": "done", "result": "succeeded",
                                           "detail": "installed and verified"})

    def audit(self, cid: str) -> list[tuple[str, str]]:
        with self.client() as hmi:
            trail = hmi.call("hmi_agent.consent.status", {"campaign_id": cid})["audit"]
        return [(a["decision"], a["source"]) for a in reversed(trail)]


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    root = Path(tempfile.mkdtemp(prefix="ota-hu-"))  # short: the socket path
    group = f"239.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    config = root / "stack.yaml"
    config.write_text(yaml.safe_dump({
        "runtime": {"dir": str(root / "run")},
        "hmi_agent": {"policy": "ask", "db": str(root / "hmi.db"), "shutdown_timeout": 5,
                      "postpone": {"limit": 1, "interval": 0},
                      "someip": {"enabled": True, "address": HMI_ADDRESS,
                                 "sd": {"group": group, "port": sd_port(), "cyclic_offer_delay": 0.5, "ttl": 3}}}}))
    env = {**os.environ, "OTA_RUNTIME_DIR": str(root / "run"), "OTA_STACK_CONFIG": str(config)}
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "STATE_DIRECTORY"):
        env.pop(name, None)
    sup = Supervisor(config, env=env, daemons=select_daemons("hmi_agent"))
    try:
        sup.up()
        yield Bench(root, config, env)
    finally:
        sup.down()
        shutil.rmtree(root, ignore_errors=True)


def test_head_unit_sees_the_offer_answers_it_and_follows_progress_to_the_result(bench: Bench) -> None:
    record = bench.dir / "headunit.jsonl"
    head_unit = ReadyProcess("headunit", [sys.executable, "-m", "bench.headunit", "--config", str(bench.config),
                                          "--address", HEAD_UNIT_ADDRESS, "--answer", "postpone", "--answer",
                                          "postpone", "--answer", "accept", "--until-result", "--record", str(record),
                                          "--timeout", str(TIMEOUT)],
                             prefix="headunit ready:", log=bench.dir / "headunit.log", env=bench.env)
    head_unit.start(timeout=TIMEOUT)
    try:
        assert head_unit.ready_value.startswith(HMI_ADDRESS + ":")  # the service's TCP endpoint, learnt from SD
        bench.offer("c1")
        bench.wait_decision("c1", "accepted")
        bench.run_campaign("c1")
        assert head_unit.proc is not None
        code = head_unit.proc.wait(timeout=TIMEOUT)
    finally:
        head_unit.stop()
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert code == 0, f"{lines}\n{tail(bench.dir / 'headunit.log')}"

    offers = [e["value"] for e in lines if e["kind"] == "offer" and e["value"]["campaign_id"] == "c1"]
    assert offers[0]["release_notes"] == OFFER["release_notes"] and offers[0]["size_bytes"] == 48 * 1024
    assert offers[0]["restrictions"] == OFFER["restrictions"] and offers[0]["est_install_s"] == 95
    assert (offers[0]["decision"], offers[0]["postpone_limit"], offers[0]["mandatory"]) == (1, 1, False)  # pending
    answers = [(e["kind"], e["action"]) for e in lines if e["kind"] in ("answer", "refused")]
    assert answers == [("answer", "postpone"), ("refused", "postpone"), ("answer", "accept")]
    refusal = next(e for e in lines if e["kind"] == "refused")
    assert refusal["code"] == 0x22 and refusal["error"].startswith("E_POSTPONE_LIMIT (0x22)"), refusal
    assert [o["decision"] for o in offers] == [1, 2, 1, 4]  # pending, postponed, pending again, accepted
    assert offers[-1]["source"] == f"someip:{HEAD_UNIT_ADDRESS}"

    assert bench.audit("c1") == [("pending", "policy:ask"), ("postponed", f"someip:{HEAD_UNIT_ADDRESS}"),
                                 ("pending", "offer:again"), ("accepted", f"someip:{HEAD_UNIT_ADDRESS}")]

    progress = [e["value"] for e in lines if e["kind"] == "progress" and e["value"]["campaign_id"] == "c1"]
    reports: list[tuple[str, str, int, int]] = []
    before: dict[str, tuple[str, str, int, int]] = {}
    for p in progress:  # each notification is the whole table: what changed since the one before
        table = {e["ecu"]: (e["ecu"], e["step"], e["bytes_done"], e["bytes_total"]) for e in p["ecus"]}
        reports += [entry for ecu, entry in table.items() if before.get(ecu) != entry]
        before = table
    assert reports == PROGRESS  # every report arrived, in order
    assert [p["phase"] for p in progress][:1] == ["download"] and "flash" in [p["phase"] for p in progress]
    results = [e["value"] for e in lines if e["kind"] == "result"]
    assert results == [{"campaign_id": "c1", "result": "succeeded", "detail": "installed and verified"}]
    assert lines[-1]["kind"] == "result"  # nothing of the campaign after its result


def test_otactl_hmi_someip_renders_the_offer_and_progress_and_accepts(bench: Bench) -> None:
    bench.offer("c2")  # already waiting when the terminal joins: the field's current value shows it
    shown = subprocess.Popen(["otactl", "hmi", "--someip", "--address", OTACTL_ADDRESS, "--campaign", "c2",
                              "--answer", "accept", "--until-result", "--timeout", str(TIMEOUT)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                             env={**bench.env, "COLUMNS": "200"})
    try:
        bench.wait_decision("c2", "accepted")
        bench.run_campaign("c2")
        out, err = shown.communicate(timeout=TIMEOUT)
    finally:
        if shown.poll() is None:
            shown.kill()
            shown.communicate()
    assert shown.returncode == 0, out + err
    assert "estimated install time: 1.6 min" in out and "Better brake assist" in out
    assert "cannot be started" in out and "You can postpone it 1 more time(s)" in out
    assert f"c2: accepted (someip:{OTACTL_ADDRESS})" in out
    assert "flash engine" in out and "flash brake" in out and "download" in out
    assert "succeeded: installed and verified" in out
    assert bench.audit("c2")[-1] == ("accepted", f"someip:{OTACTL_ADDRESS}")

"""Independent download end to end: the gateway's client orders a Linux ECU over SOME/IP.

Real processes on loopback: the bench backend (HTTPS, mutual TLS), the Linux ECU's own
``ota-dmclient`` and ``ota-ecu-agent`` (:class:`bench.linux_ecu.LinuxEcuBench`), and in the
test the gateway's :class:`~update_agent.linux_ecu.client.LinuxEcuClient` finding the ECU's
service over SOME/IP-SD. The Director targets metadata is signed by the bench's TUF
repository code against the root the ECU holds. The backend's stall knob holds a download
at a known offset, so cancel and kill happen mid-download without timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from agent.someip.discovery import SdConfig
from agent.someip.sd_timing import SdTiming
from bench.linux_ecu import LinuxEcuBench
from bench.pki import BenchPki, generate
from dmclient.encryption import EncryptionSpec, encrypt_file, wrap_content_key
from tests.download.conftest import Backend
from tests.linux_ecu.director_kit import ECU, DirectorKit, Image, order_for
from update_agent.linux_ecu import service
from update_agent.linux_ecu.client import LinuxEcuClient, SecondaryRefused, SecondaryStatus

pytestmark = pytest.mark.e2e

ECU_ADDRESS = "127.0.0.30"
GATEWAY_ADDRESS = "127.0.0.31"
TIMEOUT = 30.0
SIZE = 2 << 20
STALL_AT = 512 << 10
SCRIPT = "- write_slot\n- check\n- set_next\n"
T = TypeVar("T")


def sd_port() -> int:
    """A UDP port free on every address (bound on all of them at once): the SD port both nodes share."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


@dataclass
class Bench:
    root: Path
    pki: BenchPki
    backend: Backend
    kit: DirectorKit
    ecu: LinuxEcuBench
    sd: SdConfig

    def image(self, name: str, version: str, counter: int) -> tuple[Image, str]:
        data = random.Random(name).randbytes(SIZE)
        url = self.backend.put(name, data).url
        return Image(name, data, version, counter), url

    def run(self, scenario: Callable[[LinuxEcuClient], Awaitable[T]]) -> T:
        """``scenario(client)`` on a fresh event loop, with a started client; fails after a bound."""
        async def bounded() -> T:
            client = LinuxEcuClient(instance=1, address=GATEWAY_ADDRESS, sd=self.sd)
            await client.start(timeout=TIMEOUT)
            try:
                return await asyncio.wait_for(scenario(client), 4 * TIMEOUT)
            finally:
                await client.close()

        try:
            return asyncio.run(bounded())
        except BaseException as e:
            raise AssertionError(f"{e!r}\n{self.ecu.logs()}") from e


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    root = Path(tempfile.mkdtemp(prefix="ota-le-"))
    pki = generate(root / "pki")
    backend = Backend(root / "backend", pki)
    kit = DirectorKit(root / "director")
    group = f"239.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"
    sd = SdConfig(local_address=GATEWAY_ADDRESS, group=group, port=sd_port(), multicast_interface="127.0.0.1",
                  timing=SdTiming(cyclic_offer_delay=0.5, ttl=3))
    ecu = LinuxEcuBench(root / "ecu", ECU, backend.url, pki, kit.root_file, address=ECU_ADDRESS, sd=sd,
                        initial_version="1.0.0")
    try:
        ecu.start()
        yield Bench(root, pki, backend, kit, ecu, sd)
    finally:
        ecu.cleanup()
        backend.stop()
        shutil.rmtree(root, ignore_errors=True)


async def until(client: LinuxEcuClient, campaign: str,
                done: Callable[[SecondaryStatus], bool]) -> list[SecondaryStatus]:
    """Notifications of ``campaign`` up to the first for which ``done`` holds (all of them, in order)."""
    seen: list[SecondaryStatus] = []
    while True:
        status = await client.next_status(timeout=TIMEOUT)
        if status.campaign_id != campaign:
            continue
        seen.append(status)
        if done(status):
            return seen
        assert status.state in ("downloading", "downloaded", "installing", "installed"), status


async def refused(call: Awaitable[Any]) -> SecondaryRefused:
    """The refusal ``call`` must end in."""
    with pytest.raises(SecondaryRefused) as info:
        await call
    return info.value


def holders(root: Path, data: bytes) -> list[str]:
    """Every file under ``root`` whose bytes are ``data`` (relative paths)."""
    digest = hashlib.sha256(data).hexdigest()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and p.stat().st_size == len(data)
                  and hashlib.sha256(p.read_bytes()).hexdigest() == digest)


def test_cancel_mid_download_leaves_nothing_in_the_ecu_cache(bench: Bench) -> None:
    image, url = bench.image("ivi/ivi-cancel.tar", "1.5.0", 1)
    bench.backend.faults({"path": image.name, "stall_after": STALL_AT, "times": 1})
    targets = bench.kit.publish(image)

    async def scenario(client: LinuxEcuClient) -> tuple[list[SecondaryStatus], SecondaryStatus, SecondaryStatus]:
        ordered = await client.order_download(order_for(image, targets, campaign="c-cancel", url=url), timeout=TIMEOUT)
        assert (ordered.state, ordered.bytes_total) == ("downloading", SIZE)
        progress = await until(client, "c-cancel", lambda s: s.bytes_done >= STALL_AT)
        cancelled = await client.cancel("c-cancel", timeout=TIMEOUT)
        again = await client.cancel("c-cancel", timeout=TIMEOUT)
        return progress, cancelled, again

    try:
        progress, cancelled, again = bench.run(scenario)
    finally:
        bench.backend.release()
    assert progress[-1].state == "downloading" and progress[-1].bytes_total == SIZE
    assert (cancelled.state, cancelled.running_version, cancelled.slot) == ("cancelled", "1.0.0", "a")
    assert again == cancelled  # idempotent
    assert holders(bench.ecu.cache_dir, image.data) == []
    # dmclient's cancel of a running transfer is a request its worker acts on: await its state event
    with bench.ecu.dmclient_client() as dm, dm.subscribe("dmclient.download.state") as sub:
        while True:
            downloads = dm.call("dmclient.download.status")["targets"]
            states = [t["state"] for t in downloads if t["sha256"] == image.hashes["sha256"]]
            if states != ["downloading"]:
                break
            sub.get(timeout=TIMEOUT)  # raises if no state change comes
    assert states == ["cancelled"]


def test_partial_verification_refuses_before_any_byte_is_fetched(bench: Bench, tmp_path: Path) -> None:
    image, url = bench.image("ivi/ivi-refused.tar", "1.6.0", 1)
    other, _ = bench.image("adas/adas-1.6.tar", "1.6.0", 1)
    targets = bench.kit.publish(image, Image(other.name, other.data, "1.6.0", 1, ecu="adas"))
    rogue = DirectorKit(tmp_path / "rogue").publish(image)
    bench.backend.reset()

    async def scenario(client: LinuxEcuClient) -> list[SecondaryRefused]:
        refusals = []
        for campaign, order in (
                ("c-rogue", order_for(image, rogue, campaign="c-rogue", url=url)),
                ("c-length", order_for(image, targets, campaign="c-length", url=url, length=SIZE + 1)),
                ("c-other", order_for(Image(other.name, other.data, "1.6.0", 1), targets, campaign="c-other",
                                      url=url))):
            refusals.append(await refused(client.order_download(order, timeout=TIMEOUT)))
            status = await client.status(campaign, timeout=TIMEOUT)
            assert (status.state, status.running_version) == ("failed", "1.0.0")
        return refusals

    rogue_sig, length, other_ecu = bench.run(scenario)
    assert rogue_sig.code == service.E_VERIFICATION
    assert "not signed by 1 of the targets keys of this ECU's Director root" in str(rogue_sig)
    assert length.code == service.E_VERIFICATION and f"the order says {SIZE + 1} bytes" in str(length)
    assert other_ecu.code == service.E_VERIFICATION and "is for ECU 'adas', not this ECU 'ivi'" in str(other_ecu)
    assert bench.backend.stats(image.name)["requests"] == []


def test_download_resumes_after_the_dmclient_is_killed_then_install_activate_rollback(bench: Bench) -> None:
    image, url = bench.image("ivi/ivi-2.0.tar", "2.0.0", 2)
    bench.backend.faults({"path": image.name, "stall_after": STALL_AT, "times": 1})
    targets = bench.kit.publish(image)
    order = order_for(image, targets, campaign="c1", url=url)

    async def download(client: LinuxEcuClient) -> tuple[list[SecondaryStatus], list[SecondaryStatus],
                                                         SecondaryStatus]:
        first = await client.order_download(order, timeout=TIMEOUT)
        assert first.state == "downloading"
        stalled = await until(client, "c1", lambda s: s.bytes_done >= STALL_AT)
        await asyncio.to_thread(bench.ecu.kill, "dmclient")
        await asyncio.to_thread(bench.backend.release)
        assert (await client.order_download(order, timeout=TIMEOUT)).state == "downloading"  # a repeat: status
        await asyncio.to_thread(bench.ecu.start)  # the dmclient comes back and resumes
        rest = await until(client, "c1", lambda s: s.state == "downloaded")
        return stalled, rest, await client.status("c1", timeout=TIMEOUT)

    stalled, rest, downloaded = bench.run(download)
    assert downloaded.bytes_done == downloaded.bytes_total == SIZE
    done = [s.bytes_done for s in stalled]
    assert done == sorted(done) and 0 < done[-1] < SIZE  # progress as it came, before the kill
    assert rest[-1].bytes_done == SIZE
    assert len(stalled) + len(rest) < 100  # at most every 1 %: not one notification per 16 KiB chunk
    requests = bench.backend.stats(image.name)["requests"]
    assert len(requests) == 2 and requests[0]["range"] is None
    assert requests[1]["range"].startswith("bytes=") and int(requests[1]["range"][6:].split("-")[0]) > 0
    assert {r["client"] for r in requests} == {f"{bench.pki.vin}:{ECU}"}  # the ECU's own certificate
    # the bytes are in the ECU's cache and nowhere else but the backend's files
    assert holders(bench.root, image.data) == ["backend/files/ivi/ivi-2.0.tar",
                                               *[f"ecu/{p}" for p in holders(bench.ecu.dir, image.data)]]
    assert [Path(p).parts[0] for p in holders(bench.ecu.dir, image.data)] == ["cache"]

    async def install(client: LinuxEcuClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["bad_script"] = await refused(client.install("c1", "- check\n", timeout=TIMEOUT))
        out["installed"] = await client.install("c1", SCRIPT, timeout=TIMEOUT)
        out["install_notes"] = await until(client, "c1", lambda s: s.state == "installed")
        out["late_cancel"] = await refused(client.cancel("c1", timeout=TIMEOUT))
        out["active"] = await client.activate("c1", timeout=TIMEOUT)
        out["active_again"] = await client.activate("c1", timeout=TIMEOUT)
        return out

    r = bench.run(install)
    assert r["bad_script"].code == service.E_BAD_SCRIPT and "first step must be write_slot" in str(r["bad_script"])
    assert (r["installed"].state, r["installed"].running_version) == ("installed", "1.0.0")
    assert [s.state for s in r["install_notes"]][-2:] == ["installing", "installed"]
    assert r["late_cancel"].code == service.E_WRONG_STATE
    assert (r["active"].state, r["active"].running_version, r["active"].slot) == ("active", "2.0.0", "b")
    assert r["active_again"] == r["active"]
    slots = bench.ecu.slots()
    assert (slots["running_version"], slots["current"]) == ("2.0.0", "b")
    with bench.ecu.agent_client() as agent:  # the ECU's own IPC says the same
        view = agent.call("ecu_agent.slots")
    assert (view["running_version"], view["current"], view["campaign"]["state"]) == ("2.0.0", "b", "active")
    assert (bench.ecu.state_dir / "slots" / "slot_b" / "image").read_bytes() == image.data

    bench.ecu.kill("ecu_agent")  # the agent's state survives a crash
    bench.ecu.start()

    old_metadata = bench.kit.repo.file("1.targets.json").read_bytes()  # validly signed, older than c1's

    async def rollback(client: LinuxEcuClient) -> tuple[SecondaryStatus, SecondaryStatus, SecondaryStatus,
                                                        SecondaryRefused]:
        kept = await client.status("c1", timeout=TIMEOUT)
        back = await client.rollback("c1", timeout=TIMEOUT)
        again = await client.rollback("c1", timeout=TIMEOUT)
        replay = await refused(client.order_download(order_for(image, old_metadata, campaign="c-old", url=url),
                                                     timeout=TIMEOUT))
        return kept, back, again, replay

    kept, back, again, replay = bench.run(rollback)
    assert (kept.state, kept.running_version) == ("active", "2.0.0")
    assert (back.state, back.running_version, back.slot) == ("rolled_back", "1.0.0", "a")
    assert again == back
    assert bench.ecu.running_version() == "1.0.0"
    # the version accepted last outlived the agent's restart
    assert replay.code == service.E_VERIFICATION and "Director targets v1 is older than" in str(replay)


def test_failed_install_and_activation_keep_the_old_version_running(bench: Bench) -> None:
    image, url = bench.image("ivi/ivi-3.0.tar", "3.0.0", 3)
    targets = bench.kit.publish(image)

    async def scenario(client: LinuxEcuClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        await client.order_download(order_for(image, targets, campaign="c3", url=url), timeout=TIMEOUT)
        await until(client, "c3", lambda s: s.state == "downloaded")
        await asyncio.to_thread(bench.ecu.set_fail, "install")
        out["install"] = await refused(client.install("c3", SCRIPT, timeout=TIMEOUT))
        out["after_install"] = await asyncio.to_thread(bench.ecu.slots)
        await asyncio.to_thread(bench.ecu.set_fail, "activate")
        out["installed"] = await client.install("c3", SCRIPT, timeout=TIMEOUT)  # again, after the failure
        out["activate"] = await refused(client.activate("c3", timeout=TIMEOUT))
        out["back"] = await client.rollback("c3", timeout=TIMEOUT)
        out["never_ordered"] = await client.rollback("c-never", timeout=TIMEOUT)
        return out

    try:
        r = bench.run(scenario)
    finally:
        bench.ecu.set_fail("none")
    assert r["install"].code == service.E_INSTALL_FAILED and "fail=install" in str(r["install"])
    assert (r["after_install"]["running_version"], r["after_install"]["next"]) == ("1.0.0", "a")
    assert r["after_install"]["slots"]["b"]["complete"] is False
    assert (r["installed"].state, r["installed"].error) == ("installed", "")
    assert r["activate"].code == service.E_ACTIVATE_FAILED and "did not come up" in str(r["activate"])
    assert (r["back"].state, r["back"].running_version) == ("rolled_back", "1.0.0")
    assert (r["never_ordered"].campaign_id, r["never_ordered"].state) == ("c-never", "rolled_back")
    assert bench.ecu.slots()["next"] == "a" and bench.ecu.running_version() == "1.0.0"


def test_an_encrypted_image_is_decrypted_by_the_ecu_with_the_key_wrapped_to_it(bench: Bench) -> None:
    data = random.Random("encrypted").randbytes(256 << 10)
    image = Image("ivi/ivi-enc.tar", data, "2.5.0", 2)
    plain, cipher = bench.root / "enc-plain", bench.root / "enc-cipher"
    plain.write_bytes(data)
    content_key, nonce = os.urandom(32), os.urandom(12)
    encrypt_file(plain, cipher, content_key, nonce)
    plain.unlink()
    own = serialization.load_pem_public_key(bench.ecu.encryption_pub.read_bytes())  # the ECU's own key
    assert isinstance(own, ec.EllipticCurvePublicKey)
    ephemeral, wrapped = wrap_content_key(own, content_key)
    served = bench.backend.put("ivi/ivi-enc.tar.enc", cipher.read_bytes())
    cipher.unlink()
    spec = EncryptionSpec(ephemeral, wrapped, nonce, served.hashes)
    targets = bench.kit.publish(image)
    order = order_for(image, targets, campaign="c-enc", url=served.url,
                      wrapped_key=json.dumps(spec.to_dict()).encode())

    async def scenario(client: LinuxEcuClient) -> SecondaryStatus:
        await client.order_download(order, timeout=TIMEOUT)
        await until(client, "c-enc", lambda s: s.state == "downloaded")
        return await client.rollback("c-enc", timeout=TIMEOUT)  # nothing installed: only the download ends

    back = bench.run(scenario)
    assert (back.state, back.running_version) == ("rolled_back", "1.0.0")
    assert [Path(p).parts[0] for p in holders(bench.ecu.dir, data)] == ["cache"]  # the plaintext image
    assert {r["client"] for r in bench.backend.stats("ivi/ivi-enc.tar.enc")["requests"]} == \
        {f"{bench.pki.vin}:{ECU}"}


def test_a_new_campaign_supersedes_one_the_gateway_left_installed_and_the_install_knob_always_bites(
        bench: Bench) -> None:
    image, url = bench.image("ivi/ivi-4.0.tar", "4.0.0", 4)
    targets = bench.kit.publish(image)

    async def scenario(client: LinuxEcuClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # the gateway's campaign c-held got as far as installed (set to boot next), then the gateway ended it
        await client.order_download(order_for(image, targets, campaign="c-held", url=url), timeout=TIMEOUT)
        await until(client, "c-held", lambda s: s.state == "downloaded")
        out["held"] = await client.install("c-held", SCRIPT, timeout=TIMEOUT)
        out["held_slots"] = await asyncio.to_thread(bench.ecu.slots)
        # the next campaign's order (the same image again) is taken: c-held lets go, its image never boots
        out["new"] = await client.order_download(order_for(image, targets, campaign="c-new", url=url),
                                                 timeout=TIMEOUT)
        out["superseded"] = await client.status("c-held", timeout=TIMEOUT)
        out["new_slots"] = await asyncio.to_thread(bench.ecu.slots)
        out["held_install"] = await refused(client.install("c-held", SCRIPT, timeout=TIMEOUT))
        await until(client, "c-new", lambda s: s.state == "downloaded")
        # slot b already holds this very image completely: the install knob must still fail the write
        await asyncio.to_thread(bench.ecu.set_fail, "install")
        out["install"] = await refused(client.install("c-new", SCRIPT, timeout=TIMEOUT))
        out["after_install"] = await asyncio.to_thread(bench.ecu.slots)
        out["back"] = await client.rollback("c-new", timeout=TIMEOUT)
        out["held_back"] = await client.rollback("c-held", timeout=TIMEOUT)  # late: nothing of it ran
        return out

    try:
        r = bench.run(scenario)
    finally:
        bench.ecu.set_fail("none")
    assert (r["held"].state, r["held_slots"]["current"], r["held_slots"]["next"]) == ("installed", "a", "b")
    assert r["new"].state == "downloading"
    assert r["superseded"].state == "cancelled" and "superseded by campaign c-new" in r["superseded"].error
    assert (r["new_slots"]["current"], r["new_slots"]["next"]) == ("a", "a")  # the held image does not boot next
    assert r["held_install"].code == service.E_WRONG_STATE
    assert r["install"].code == service.E_INSTALL_FAILED and "fail=install" in str(r["install"])
    assert r["after_install"]["slots"]["b"]["complete"] is False and r["after_install"]["next"] == "a"
    assert (r["back"].state, r["back"].running_version) == ("rolled_back", "1.0.0")
    assert (r["held_back"].state, r["held_back"].running_version) == ("rolled_back", "1.0.0")
    assert bench.ecu.running_version() == "1.0.0"


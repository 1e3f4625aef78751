"""Jobs on Linux ECUs over SOME/IP: independent download, install, rollback (FAW paper 3.3).

A Linux ECU (IVI, ADAS) runs an ``ota-dmclient`` and an update agent of its own and offers the
"OTA secondary" service (:mod:`update_agent.linux_ecu.service`). Talking to ECUs is this daemon's
business, so the gateway's side of that service lives here, as job kinds of the same persistent
job table as flash and rollback: a restarted update agent answers for them
(``Interrupted``) and the engine takes them up exactly as it takes up a flash job. Every call
the ECU takes is idempotent per campaign, so running a job again is safe.

``linux_download``
    send the download order (the Director targets.json bytes the gateway's dmclient verified,
    plus the image's url, length and hashes, and for an encrypted image the ``wrapped_key``:
    the Director's encryption spec, the key wrapped to the ECU's own key, the url the
    ciphertext's): the ECU verifies them itself (Uptane partial
    verification) and downloads straight from the backend with its own dmclient. Then follow
    its ``status`` notifications (the field's getter when none comes for ``poll_s``) until
    ``downloaded``; its byte counts become ``update_agent.job.progress`` (step ``download``).
    ``failed`` or ``cancelled`` at the ECU fails the job with the ECU's reason.
``linux_install``
    status first (a job run again after a restart must not install twice): ``active`` on the
    target version is done; ``installed`` is activated; else the install script is handed over
    (``install``), then ``activate``. The ECU's running version must be the target version.
``linux_rollback``
    the ECU's ``rollback`` call (back to the previous slot; a no-op at the ECU when it runs the
    previous version already); with ``expected_version`` the running version is checked after it.

Cancel is not a job (``update_agent.linux.cancel``): the ECU cancels its download at once and
the download job then ends ``failed`` (``cancelled``). Each Linux ECU is its own "bus" of the
scheduler (``someip-<ecu>``): its jobs queue one after another and never wait for a CAN bus.
One :class:`~update_agent.linux_ecu.client.LinuxEcuClient` per ECU is kept open; a connection
lost (the ECU agent restarted) is dropped and made again on the next call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config.node import Node
from agent.errors import OtaError, OtaTimeoutError, SomeIpError, TransportError

if TYPE_CHECKING:  # the SOME/IP stack is loaded with the first Linux ECU configured (idle RSS)
    from agent.someip.discovery import SdConfig
    from update_agent.linux_ecu.client import LinuxEcuClient, SecondaryStatus

log = logging.getLogger(__name__)

KINDS = ("linux_download", "linux_install", "linux_rollback")
#: (step, bytes_done, bytes_total)
Progress = Callable[[str, int, int], None]


def bus_of(ecu: str) -> str:
    """The scheduler "bus" of a Linux ECU: its jobs queue one after another, apart from the CAN buses."""
    return f"someip-{ecu}"


@dataclass(frozen=True)
class LinuxEcuSettings:
    """``update_agent.linux_ecus`` and ``update_agent.someip``::

        someip: {address: 127.0.0.21, sd: {group: 224.224.224.245, port: 30490}}  # the gateway's node
        linux_ecus:
          ivi: {instance: 1}          # the ECU's "OTA secondary" instance (the Director signs the same)
        linux_timeouts: {call: 30, connect: 10, notification: 5, download: 3600}
    """

    address: str
    sd: SdConfig
    #: ECU name -> service instance
    ecus: Mapping[str, int]
    call_timeout: float = 30.0
    connect_timeout: float = 10.0
    #: s without a notification before the status is read with the getter (a lost event's backstop)
    notification_timeout: float = 5.0
    #: s a download may take before its job fails
    download_timeout: float = 3600.0


def parse_settings(node: Node) -> LinuxEcuSettings | None:
    """The Linux ECU keys of the ``update_agent`` section; None when no Linux ECU is configured."""
    if not node.has("linux_ecus"):
        for key in ("someip", "linux_timeouts"):
            if node.has(key):
                raise node.error("only used with linux_ecus", key)
        return None
    from hmi_agent.someip_service import parse_someip

    someip = parse_someip(node.child("someip", {}))
    ecus: dict[str, int] = {}
    for name, ecu in node.children("linux_ecus"):
        ecus[name] = ecu.integer("instance", minimum=1, maximum=0xFFFE)
        ecu.done()
    t = node.child("linux_timeouts", {})
    settings = LinuxEcuSettings(
        someip.address, someip.sd, ecus, call_timeout=t.number("call", 30.0, minimum=0.1, maximum=3600.0),
        connect_timeout=t.number("connect", 10.0, minimum=0.1, maximum=600.0),
        notification_timeout=t.number("notification", 5.0, minimum=0.05, maximum=600.0),
        download_timeout=t.number("download", 3600.0, minimum=1.0, maximum=7 * 86400.0))
    t.done()
    return settings


@dataclass(frozen=True)
class LinuxOutcome:
    state: str  # succeeded | failed
    result: dict[str, Any] | None
    error: dict[str, Any] | None


def _failed(error: BaseException | str, step: str, status: SecondaryStatus | None = None) -> LinuxOutcome:
    if isinstance(error, str):
        record = {"class": "LinuxEcuError", "message": error, "step": step}
    else:
        record = {"class": type(error).__name__, "message": str(error), "step": step}
    return LinuxOutcome("failed", {"status": status.to_json()} if status else None, record)


class LinuxEcus:
    """The SOME/IP clients of the configured Linux ECUs and the jobs run with them."""

    def __init__(self, settings: LinuxEcuSettings, *, clock: Callable[[], float] | None = None) -> None:
        self.settings = settings
        self._clients: dict[str, LinuxEcuClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._clock = clock

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def close(self) -> None:
        for client in list(self._clients.values()):
            await client.close()
        self._clients.clear()

    async def client(self, ecu: str) -> LinuxEcuClient:
        """The open client of ``ecu`` (connected on first use and after a lost connection)."""
        from update_agent.linux_ecu.client import LinuxEcuClient

        async with self._locks.setdefault(ecu, asyncio.Lock()):
            client = self._clients.get(ecu)
            if client is None:
                s = self.settings
                client = LinuxEcuClient(instance=s.ecus[ecu], address=s.address, sd=s.sd,
                                        client_id=0x0300 + sorted(s.ecus).index(ecu) + 1)
                await client.start(timeout=s.connect_timeout)
                self._clients[ecu] = client
                log.info("linux ECU %s: connected (instance 0x%04x)", ecu, s.ecus[ecu])
            return client

    async def drop(self, ecu: str) -> None:
        client = self._clients.pop(ecu, None)
        if client is not None:
            await client.close()

    async def call(self, ecu: str, what: Callable[[LinuxEcuClient], Any]) -> SecondaryStatus:
        """One call; a lost connection is made again once (the ECU agent restarted) before giving up."""
        for attempt in (1, 2):
            client = await self.client(ecu)
            try:
                status: SecondaryStatus = await what(client)
                return status
            except (TransportError, OtaTimeoutError, SomeIpError) as e:
                from update_agent.linux_ecu.client import SecondaryRefused

                if isinstance(e, SecondaryRefused) or attempt == 2:
                    raise
                log.warning("linux ECU %s: %s; connecting again", ecu, e)
                await self.drop(ecu)
        raise AssertionError("unreachable")

    async def status(self, ecu: str, campaign_id: str | None = None) -> SecondaryStatus:
        """The status of ``campaign_id`` at the ECU, or (None) its ``status`` field now (the getter)."""
        t = self.settings.call_timeout
        if campaign_id is not None:
            return await self.call(ecu, lambda c: c.status(campaign_id, timeout=t))

        async def get(client: LinuxEcuClient) -> SecondaryStatus:
            from update_agent.linux_ecu.client import SecondaryStatus

            return SecondaryStatus.from_payload(await client.consumer.get_field("status", timeout=t))

        return await self.call(ecu, get)

    async def running_version(self, ecu: str) -> str:
        """What the ECU runs."""
        return (await self.status(ecu)).running_version

    async def cancel(self, ecu: str, campaign_id: str) -> SecondaryStatus:
        t = self.settings.call_timeout
        return await self.call(ecu, lambda c: c.cancel(campaign_id, timeout=t))

    # -- jobs -------------------------------------------------------------------------------------
    async def run(self, kind: str, ecu: str, request: Mapping[str, Any], progress: Progress) -> LinuxOutcome:
        """Run one job to its end; never raises for the job's own failure."""
        step = kind.removeprefix("linux_")
        try:
            if kind == "linux_download":
                return await self._download(ecu, request, progress)
            if kind == "linux_install":
                return await self._install(ecu, request, progress)
            return await self._rollback(ecu, request, progress)
        except asyncio.CancelledError:
            raise
        except OtaError as e:
            if isinstance(e, TransportError | OtaTimeoutError):
                await self.drop(ecu)
            log.warning("linux ECU %s: %s job failed: %s", ecu, step, e)
            return _failed(e, step)
        except Exception as e:  # a bug: the job fails with its class named, the daemon stays up
            log.exception("linux ECU %s: %s job crashed", ecu, step)
            return _failed(e, step)

    async def _download(self, ecu: str, request: Mapping[str, Any], progress: Progress) -> LinuxOutcome:
        from update_agent.linux_ecu.client import DownloadOrder

        s = self.settings
        cid = str(request["campaign_id"])
        targets = await asyncio.to_thread(Path(request["director_targets"]).read_bytes)
        order = DownloadOrder(campaign_id=cid, ecu=ecu, target=str(request["target"]), url=str(request["url"]),
                              length=int(request["length"]), hashes=dict(request["hashes"]),
                              software_version=str(request["software_version"]), director_targets=targets,
                              wrapped_key=str(request.get("wrapped_key") or "").encode())
        status = await self.call(ecu, lambda c: c.order_download(order, timeout=s.call_timeout))
        deadline = self._now() + s.download_timeout
        while True:
            if status.campaign_id == cid:
                progress("download", status.bytes_done, status.bytes_total or order.length)
                if status.state in ("downloaded", "installing", "installed", "active"):
                    return LinuxOutcome("succeeded", {"status": status.to_json()}, None)
                if status.state in ("failed", "cancelled", "rolled_back"):
                    return _failed(f"{ecu}: download {status.state} at the ECU: {status.error or status.state}",
                                   "download", status)
            if self._now() > deadline:
                return _failed(f"{ecu}: download not done within {s.download_timeout:g} s", "download", status)
            status = await self._next_status(ecu, cid)

    async def _next_status(self, ecu: str, cid: str) -> SecondaryStatus:
        """The next notification; none within the notification timeout (or the connection lost: the ECU
        agent restarted): the status, read (connecting again)."""
        s = self.settings
        client = await self.client(ecu)
        try:
            return await client.next_status(timeout=s.notification_timeout)
        except OtaTimeoutError:
            pass
        except (TransportError, SomeIpError) as e:
            log.warning("linux ECU %s: %s; asking for the status", ecu, e)
            await self.drop(ecu)
        return await self.call(ecu, lambda c: c.status(cid, timeout=s.call_timeout))

    async def _install(self, ecu: str, request: Mapping[str, Any], progress: Progress) -> LinuxOutcome:
        s = self.settings
        cid, want = str(request["campaign_id"]), str(request["software_version"])
        status = await self.call(ecu, lambda c: c.status(cid, timeout=s.call_timeout))
        if status.state == "active" and status.running_version == want:
            return LinuxOutcome("succeeded", {"status": status.to_json(), "already": True}, None)
        if status.state not in ("installed", "active"):
            progress("install", 0, 1)
            status = await self.call(ecu, lambda c: c.install(cid, str(request["script"]), timeout=s.call_timeout))
        progress("activate", 0, 1)
        status = await self.call(ecu, lambda c: c.activate(cid, timeout=s.call_timeout))
        progress("activate", 1, 1)
        if status.running_version != want:
            return _failed(f"{ecu}: runs {status.running_version or 'nothing'} after the activation, not {want}",
                           "activate", status)
        return LinuxOutcome("succeeded", {"status": status.to_json()}, None)

    async def _rollback(self, ecu: str, request: Mapping[str, Any], progress: Progress) -> LinuxOutcome:
        s = self.settings
        cid = str(request["campaign_id"])
        progress("rollback", 0, 1)
        status = await self.call(ecu, lambda c: c.rollback(cid, timeout=s.call_timeout))
        progress("rollback", 1, 1)
        want = request.get("expected_version")
        if want and status.running_version != want:
            return _failed(f"{ecu}: runs {status.running_version or 'nothing'} after the rollback, not {want}",
                           "rollback", status)
        return LinuxOutcome("succeeded", {"status": status.to_json(), "method": "linux_rollback"}, None)

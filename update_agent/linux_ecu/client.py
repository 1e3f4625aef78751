"""The gateway's side of the "OTA secondary" service (:mod:`.service`), as an asyncio library.

    client = LinuxEcuClient(instance=1, address="127.0.0.30", sd=sd_config, client_id=0x0301)
    await client.start(timeout=5)                     # SD find, TCP connect, subscribe to ``status``
    status = await client.order_download(DownloadOrder(...), timeout=10)
    while (status := await client.next_status(timeout=30)).state == "downloading": ...
    await client.install(campaign_id, script, timeout=30)
    await client.activate(campaign_id, timeout=30)
    await client.close()

``sd`` is the SD configuration of the network (group, port, multicast interface, timing: the
``sd`` of :class:`hmi_agent.someip_service.SomeIpSettings`); the client's own SD runs at
``address`` with it. A refused call raises :class:`SecondaryRefused` (``code`` is the
application return code of :data:`.service.APP_ERRORS`, the message its name and the ECU's
reason); no answer in time raises :class:`agent.errors.OtaTimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.errors import OtaError, OtaTimeoutError, SomeIpError
from agent.someip.consumer import ServiceConsumer
from agent.someip.discovery import SdConfig, ServiceDiscovery
from update_agent.linux_ecu.service import EVENTGROUP_STATUS, SERVICE_ID, app_error_text, sd_for, secondary_interface

#: the gateway's default SOME/IP client id for this service
CLIENT_ID = 0x0301


class SecondaryRefused(SomeIpError):
    """The Linux ECU refused a call: ``code`` is the application return code (0x20..0x5E)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message, return_code=code)
        self.code = code


@dataclass(frozen=True)
class DownloadOrder:
    """What the ECU downloads itself: the image (url, length, hashes) and the Director metadata naming it."""

    campaign_id: str
    ecu: str
    target: str
    url: str
    length: int
    hashes: Mapping[str, str]
    software_version: str
    director_targets: bytes
    wrapped_key: bytes = b""

    def payload(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "target": self.target, "ecu": self.ecu, "url": self.url,
                "length": self.length, "sha256": self.hashes.get("sha256", ""),
                "sha512": self.hashes.get("sha512", ""), "software_version": self.software_version,
                "wrapped_key": self.wrapped_key, "director_targets": self.director_targets}

    @classmethod
    def from_payload(cls, value: Mapping[str, Any]) -> DownloadOrder:
        hashes = {k: str(value[k]) for k in ("sha256", "sha512") if value[k]}
        return cls(campaign_id=value["campaign_id"], ecu=value["ecu"], target=value["target"], url=value["url"],
                   length=int(value["length"]), hashes=hashes, software_version=value["software_version"],
                   director_targets=bytes(value["director_targets"]), wrapped_key=bytes(value["wrapped_key"]))


@dataclass(frozen=True)
class SecondaryStatus:
    campaign_id: str
    state: str
    bytes_done: int
    bytes_total: int
    running_version: str
    slot: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"campaign_id": self.campaign_id, "state": self.state, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "running_version": self.running_version, "slot": self.slot,
                "error": self.error}

    @classmethod
    def from_payload(cls, value: Mapping[str, Any]) -> SecondaryStatus:
        return cls(campaign_id=str(value["campaign_id"]), state=str(value["state"]),
                   bytes_done=int(value["bytes_done"]), bytes_total=int(value["bytes_total"]),
                   running_version=str(value["running_version"]), slot=str(value["slot"]),
                   error=str(value["error"]))


class LinuxEcuClient:
    """One gateway's connection to one Linux ECU's service instance."""

    def __init__(self, *, instance: int, address: str, sd: SdConfig, client_id: int = CLIENT_ID,
                 service_id: int = SERVICE_ID) -> None:
        self.instance = instance
        self.address = address
        self.sd = sd
        self.client_id = client_id
        self.service_id = service_id
        self._sd: ServiceDiscovery | None = None
        self._consumer: ServiceConsumer | None = None
        #: the field's value read at start, handed out by the first next_status()
        self._initial: dict[str, Any] | None = None

    @property
    def consumer(self) -> ServiceConsumer:
        if self._consumer is None:
            raise SomeIpError("LinuxEcuClient: not started")
        return self._consumer

    async def start(self, *, timeout: float) -> None:
        """Find the service, connect over TCP and subscribe to the ``status`` field.

        The field's value at subscription is the first :meth:`next_status` (it is also read
        with the getter: the initial notification can be dropped when the provider has not
        registered our TCP connection yet; a value twice is harmless).
        """
        self._sd = ServiceDiscovery(sd_for(self.sd, self.address))
        self._consumer = ServiceConsumer(secondary_interface(self.service_id, self.instance), self._sd,
                                         address=self.address, client_id=self.client_id)
        try:
            await self._sd.start()
            await self._consumer.start(timeout=timeout)
            await self._consumer.connect_tcp(timeout=timeout)
            await self._consumer.subscribe(EVENTGROUP_STATUS, timeout=timeout)
            self._initial = await self._consumer.get_field("status", timeout=timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
        if self._sd is not None:
            await self._sd.close()
        self._consumer = None
        self._sd = None

    async def __aenter__(self) -> LinuxEcuClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, method: str, value: Mapping[str, Any], campaign_id: str, timeout: float) -> SecondaryStatus:
        try:
            answer = await self.consumer.call(method, value, timeout=timeout)
        except SomeIpError as e:
            if not 0x20 <= e.return_code <= 0x5E:
                raise
            message = f"{method} {campaign_id or '(no campaign)'}: {app_error_text(e.return_code)}"
            reason = await self._reason(campaign_id, timeout)
            raise SecondaryRefused(e.return_code, f"{message}: {reason}" if reason else message) from None
        return SecondaryStatus.from_payload(answer)

    async def _reason(self, campaign_id: str, timeout: float) -> str:
        """The ECU's reason for the refusal just received (the campaign's status error), or ""."""
        with contextlib.suppress(OtaError):
            value = await self.consumer.call("status", {"campaign_id": campaign_id}, timeout=min(timeout, 5.0))
            if value["campaign_id"] == campaign_id:
                return str(value["error"])
        return ""

    async def order_download(self, order: DownloadOrder, *, timeout: float) -> SecondaryStatus:
        return await self._call("order_download", order.payload(), order.campaign_id, timeout)

    async def status(self, campaign_id: str, *, timeout: float) -> SecondaryStatus:
        return await self._call("status", {"campaign_id": campaign_id}, campaign_id, timeout)

    async def cancel(self, campaign_id: str, *, timeout: float) -> SecondaryStatus:
        return await self._call("cancel", {"campaign_id": campaign_id}, campaign_id, timeout)

    async def install(self, campaign_id: str, script: str, *, timeout: float) -> SecondaryStatus:
        return await self._call("install", {"campaign_id": campaign_id, "script": script}, campaign_id, timeout)

    async def activate(self, campaign_id: str, *, timeout: float) -> SecondaryStatus:
        return await self._call("activate", {"campaign_id": campaign_id}, campaign_id, timeout)

    async def rollback(self, campaign_id: str, *, timeout: float) -> SecondaryStatus:
        return await self._call("rollback", {"campaign_id": campaign_id}, campaign_id, timeout)

    async def next_status(self, *, timeout: float) -> SecondaryStatus:
        """The next ``status`` notification (queued from the moment it arrived; the first is the value at start)."""
        if self._initial is not None:
            value, self._initial = self._initial, None
            return SecondaryStatus.from_payload(value)
        try:
            value = await self.consumer.next_event("status", timeout=timeout)
        except OtaTimeoutError:
            raise OtaTimeoutError(f"Linux ECU instance 0x{self.instance:04x}: no status notification within "
                                  f"{timeout:g} s") from None
        return SecondaryStatus.from_payload(value)

    def pending_statuses(self) -> int:
        return self.consumer.pending_events("status") + (self._initial is not None)


async def wait_for_state(client: LinuxEcuClient, campaign_id: str, states: set[str], *,
                         timeout: float) -> SecondaryStatus:
    """Notifications until the campaign reaches one of ``states`` (OtaTimeoutError after ``timeout`` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await client.next_status(timeout=max(deadline - loop.time(), 0.001))
        if status.campaign_id == campaign_id and status.state in states:
            return status

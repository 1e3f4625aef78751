"""The head unit's side of the HMI service (:mod:`hmi_agent.someip_service`), as a library.

:class:`HeadUnitClient` (asyncio) is one SOME/IP node: its own SD at ``address`` finds the HMI
agent's service, subscribes to both eventgroups (consent: the ``offer`` field; campaign: the
``progress`` field and the ``result`` event, all over TCP), and turns what arrives, in arrival
order, into the same per-campaign views the HMI agent's display model keeps (what ``otactl
hmi`` renders). Answers are the service's methods; a refusal raises :class:`SomeIpError` whose
message is the application error (``E_POSTPONE_LIMIT (0x22): ...``).

:class:`SyncHeadUnit` runs a client on an event loop in a thread for synchronous callers
(``otactl hmi --someip``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from agent.errors import OtaTimeoutError, SomeIpError
from agent.someip.consumer import ServiceConsumer
from agent.someip.discovery import ServiceDiscovery
from agent.someip.message import Message, MessageType
from agent.someip.sd_message import L4Protocol
from agent.someip.sd_registry import Address
from hmi_agent.someip_service import (
    EVENTGROUP_CAMPAIGN,
    EVENTGROUP_CONSENT,
    METHOD_DECISION,
    SomeIpSettings,
    app_error_text,
    decision_consent,
    offer_consent,
    progress_view,
)

T = TypeVar("T")
#: the head unit's SOME/IP client id
CLIENT_ID = 0x0201


@dataclass(frozen=True)
class Update:
    """One notification as it arrived: ``kind`` offer | progress | result, its decoded value, the view after it."""

    kind: str
    value: dict[str, Any]
    view: dict[str, Any] | None


class _OrderedConsumer(ServiceConsumer):
    """A consumer that also queues every notification, whatever its event, in arrival order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def _on_message(self, message: Message, peer: Address) -> None:
        super()._on_message(message, peer)
        if message.message_type == MessageType.NOTIFICATION and message.service_id == self.interface.service_id:
            found = self.interface.event_by_id(message.method_id)
            if found is not None:  # moved from the per-event queue it was just put in
                self.arrivals.put_nowait((found[0], self._events[found[0]].get_nowait()))


class HeadUnitClient:
    def __init__(self, settings: SomeIpSettings, address: str, *, client_id: int = CLIENT_ID) -> None:
        self.settings = settings
        self.address = address
        self.sd = ServiceDiscovery(settings.sd_for(address))
        self.consumer = _OrderedConsumer(settings.interface, self.sd, address=address, client_id=client_id)
        #: campaign id -> view (as :meth:`hmi_agent.display.DisplayModel.view`), newest change last
        self.views: dict[str, dict[str, Any]] = {}
        #: the postpone limit the last ``offer`` said
        self.postpone_limit: int | None = None

    @property
    def provider(self) -> Address | None:
        """The service's TCP endpoint, once found."""
        return self.consumer.offer.endpoint(L4Protocol.TCP) if self.consumer.offer is not None else None

    async def start(self, *, timeout: float) -> None:
        """Find the service and subscribe; the fields' current values follow as the first updates.

        They are read with the fields' getters after subscribing, not left to the initial
        notifications alone: the provider sends those at the subscription, and drops them
        when it has not yet registered our TCP connection (it was accepted, but its task had
        not run). A value that arrives twice is harmless: views are whole.
        """
        await self.sd.start()
        try:
            await self.consumer.start(timeout=timeout)
            for group in (EVENTGROUP_CONSENT, EVENTGROUP_CAMPAIGN):
                await self.consumer.subscribe(group, timeout=timeout)
            for name in ("offer", "progress"):
                self.consumer.arrivals.put_nowait((name, await self.consumer.get_field(name, timeout=timeout)))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.consumer.close()
        await self.sd.close()

    def _view(self, campaign_id: str) -> dict[str, Any]:
        view = self.views.pop(campaign_id, None) or {"campaign_id": campaign_id, "consent": None, "phase": None,
                                                     "text": None, "progress": {}, "result": None, "detail": None}
        self.views[campaign_id] = view
        return view

    async def next_update(self, *, timeout: float) -> Update:
        """The next notification, applied to its campaign's view."""
        try:
            kind, value = await asyncio.wait_for(self.consumer.arrivals.get(), timeout)
        except asyncio.TimeoutError:
            raise OtaTimeoutError(f"head unit: nothing from the HMI service within {timeout:g} s") from None
        view: dict[str, Any] | None = None
        if kind == "offer":
            self.postpone_limit = value["postpone_limit"]
            consent = offer_consent(value)
            if consent is not None:
                view = self._view(consent["campaign_id"])
                view["consent"] = consent
        elif value["campaign_id"]:
            view = self._view(value["campaign_id"])
            if kind == "progress":
                view.update(progress_view(value))
            else:
                view.update(result=value["result"], detail=value["detail"] or None)
        return Update(kind, value, _copy(view) if view is not None else None)

    async def answer(self, action: str, window: str | None = None, campaign_id: str | None = None, *,
                     timeout: float = 5.0) -> dict[str, Any]:
        """``accept`` | ``postpone`` | ``schedule`` (with ``window``) | ``decline``: the resulting consent."""
        if action not in METHOD_DECISION:
            raise ValueError(f"unknown answer {action!r}: {', '.join(METHOD_DECISION)}")
        request: dict[str, Any] = {"campaign_id": campaign_id or ""}
        if action == "schedule":
            request["window"] = window or ""
        try:
            decision = await self.consumer.call(action, request, timeout=timeout)
        except SomeIpError as e:
            raise SomeIpError(app_error_text(e.return_code), return_code=e.return_code) from None
        return decision_consent(decision)


def _copy(view: dict[str, Any]) -> dict[str, Any]:
    return {**view, "progress": {k: dict(v) for k, v in view["progress"].items()}}


class SyncHeadUnit:
    """A :class:`HeadUnitClient` on its own event loop thread, for synchronous code."""

    def __init__(self, settings: SomeIpSettings, address: str, *, client_id: int = CLIENT_ID) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="headunit-loop", daemon=True)
        self._thread.start()
        self.client: HeadUnitClient = self._run(self._make(settings, address, client_id), None)

    @staticmethod
    async def _make(settings: SomeIpSettings, address: str, client_id: int) -> HeadUnitClient:
        return HeadUnitClient(settings, address, client_id=client_id)  # its asyncio objects on the loop

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(None if timeout is None else timeout + 5)

    def start(self, *, timeout: float) -> None:
        self._run(self.client.start(timeout=timeout), timeout)

    def next_update(self, *, timeout: float | None) -> Update:
        wait = 1e9 if timeout is None else timeout
        return self._run(self.client.next_update(timeout=wait), None)

    def answer(self, action: str, window: str | None, campaign_id: str | None) -> dict[str, Any]:
        return self._run(self.client.answer(action, window, campaign_id), None)

    def close(self) -> None:
        try:
            self._run(self.client.close(), 10.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def __enter__(self) -> SyncHeadUnit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

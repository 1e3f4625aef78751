"""``ota-hmi-agent``: driver consent and the display, over IPC.

Wiring only: :class:`~hmi_agent.consent.ConsentBook` (SQLite, in a thread) behind the
methods of :mod:`agent.ipc.declarations.hmi_agent`; each decision is published as
``hmi_agent.consent.changed``. One timer task moves the flow on by time: it sleeps
until :meth:`~hmi_agent.consent.ConsentBook.next_wake` (re-armed by every request and
answer) and then ticks the book, so a postponement that ran out, a scheduled window
that opened or a passed deadline is decided without anyone asking, also after a
restart (the first tick catches up). :class:`~hmi_agent.display.DisplayModel` keeps
each campaign's view (offer, phase, progress per ECU, result) and hands it to the
display bindings; here the IPC event binding that ``otactl hmi`` renders and, when
``hmi_agent.someip.enabled``, the head unit's SOME/IP service
(:class:`~hmi_agent.someip_service.HeadUnitService`), which also takes answers.
``ota-hmi-agent --config FILE`` (console script) runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from agent.ipc.server import Call, Handler
from agent.runtime.daemon import Daemon
from hmi_agent.config import HmiConfig
from hmi_agent.consent import OPEN, Consent, ConsentBook
from hmi_agent.display import DisplayModel, EventBinding
from hmi_agent.someip_service import HeadUnitService

log = logging.getLogger(__name__)

#: longest single sleep of the timer (s): a wall-clock jump is noticed within this
MAX_SLEEP = 300.0


class HmiDaemon(Daemon):
    """ota-hmi-agent: driver consent with a persisted audit trail, and the display."""

    name = "hmi_agent"
    config_class = HmiConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book: ConsentBook | None = None
        self.display = DisplayModel([EventBinding(self.publish)])
        self._rearm = asyncio.Event()
        self.head_unit: HeadUnitService | None = None

    @property
    def cfg(self) -> HmiConfig:
        assert isinstance(self.config, HmiConfig)
        return self.config

    async def start(self) -> None:
        cfg = self.cfg
        self.book = await asyncio.to_thread(ConsentBook, cfg.db, cfg.policy, rules=cfg.rules)
        if cfg.someip.enabled:
            self.head_unit = HeadUnitService(cfg.someip, self.answer, self._book)
            self.display.bindings.append(self.head_unit)
        for consent in reversed(await asyncio.to_thread(self.book.consents)):
            if consent.decision in OPEN:
                self.display.consent(consent.to_json())
        if self.head_unit is not None:
            await self.head_unit.start()
        log.info("hmi_agent: consent policy %s, audit trail in %s", cfg.policy, cfg.db)
        self.spawn(self._timer(), "consent-timer")

    async def stop(self) -> None:
        if self.head_unit is not None:
            await self.head_unit.stop()
        if self.book is not None:
            self.book.close()

    async def apply_config(self, old: Any, new: Any) -> None:
        if self.book is not None:
            self.book.configure(self.cfg.policy, self.cfg.rules)
            self._rearm.set()
        if old.someip != new.someip:
            log.warning("hmi_agent: someip settings changed; they take effect at the next restart")

    def status_details(self) -> Mapping[str, Any]:
        if self.book is None:
            return {}
        waiting = [c.campaign_id for c in self.book.consents() if c.decision in OPEN]
        return {"policy": self.cfg.policy, "waiting": waiting}

    async def _timer(self) -> None:
        """Tick the book when the next time-driven change is due (or when re-armed)."""
        book = self._book()
        while True:
            self._rearm.clear()
            for consent in await asyncio.to_thread(book.tick):
                self._changed(consent)
            wake = await asyncio.to_thread(book.next_wake)
            delay = MAX_SLEEP if wake is None else min(MAX_SLEEP, max(0.0, wake - book.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rearm.wait(), timeout=delay)

    def _changed(self, consent: Consent) -> None:
        log.info("hmi_agent: campaign %s: %s (%s)", consent.campaign_id, consent.decision, consent.source)
        self.publish("hmi_agent.consent.changed", {"campaign_id": consent.campaign_id,
                                                   "decision": consent.decision, "source": consent.source})
        self.display.consent(consent.to_json())

    async def answer(self, campaign_id: str | None, decision: str, source: str,
                     window: str | None) -> dict[str, Any]:
        """Record an answer (IPC or the head unit); raises ConsentError when the book refuses it."""
        consent = await asyncio.to_thread(self._book().answer, campaign_id, decision, source, window=window)
        self._changed(consent)
        self._rearm.set()
        return consent.to_json()

    def handlers(self) -> dict[str, Handler]:
        async def request(call: Call) -> Any:
            consent, changed = await asyncio.to_thread(self._book().request, call.params["campaign_id"],
                                                       call.params["offer"])
            if changed:
                self._changed(consent)
            self._rearm.set()
            return consent.to_json()

        async def answer(call: Call) -> Any:
            p = call.params
            # the caller names itself (cli:alice); the kernel-checked uid is always kept with it
            source = f"{p.get('source', 'ipc')}@uid{call.peer.uid}"
            return await self.answer(p.get("campaign_id"), p["decision"], source, p.get("window"))

        async def status(call: Call) -> Any:
            cid = call.params.get("campaign_id")
            book = self._book()
            consents = await asyncio.to_thread(book.consents, cid)
            audit = await asyncio.to_thread(book.audit, cid, call.params.get("audit_limit", 100))
            r = book.rules
            rules = {"postpone_limit": r.postpone_limit, "postpone_interval": r.postpone_interval,
                     "maintenance_windows": [w.spec for w in r.maintenance_windows], "mandatory": r.mandatory,
                     "deadline_after": r.deadline_after}
            return {"policy": book.policy, "consents": [c.to_json() for c in consents], "audit": audit,
                    "rules": rules}

        async def display(call: Call) -> None:
            p = call.params
            if p.get("text"):
                log.info("hmi_agent: display [%s]: %s", p["campaign_id"], p["text"])
            self.display.campaign(p)

        async def display_get(call: Call) -> Any:
            return {"views": self.display.views()}

        return {"hmi_agent.consent.request": request, "hmi_agent.consent.answer": answer,
                "hmi_agent.consent.status": status, "hmi_agent.display": display,
                "hmi_agent.display.get": display_get}

    def _book(self) -> ConsentBook:
        assert self.book is not None, "handlers run only after start()"
        return self.book


def main(argv: list[str] | None = None) -> int:
    return HmiDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

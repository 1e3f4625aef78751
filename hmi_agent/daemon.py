"""``ota-hmi-agent``: driver consent over IPC (minimal for issue 6; issue 7 adds the terminal HMI).

Wiring only: :class:`~hmi_agent.consent.ConsentBook` (SQLite, in a thread) behind the
methods of :mod:`agent.ipc.declarations.hmi_agent`; each decision is published as
``hmi_agent.consent.changed``. ``hmi_agent.display`` is logged. ``ota-hmi-agent --config
FILE`` (console script) runs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from agent.ipc.server import Call, Handler
from agent.runtime.daemon import Daemon
from hmi_agent.config import HmiConfig
from hmi_agent.consent import Consent, ConsentBook

log = logging.getLogger(__name__)


class HmiDaemon(Daemon):
    """ota-hmi-agent: driver consent with a persisted audit trail."""

    name = "hmi_agent"
    config_class = HmiConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book: ConsentBook | None = None

    @property
    def cfg(self) -> HmiConfig:
        assert isinstance(self.config, HmiConfig)
        return self.config

    async def start(self) -> None:
        self.book = await asyncio.to_thread(ConsentBook, self.cfg.db, self.cfg.policy)
        log.info("hmi_agent: consent policy %s, audit trail in %s", self.cfg.policy, self.cfg.db)

    async def stop(self) -> None:
        if self.book is not None:
            self.book.close()

    async def apply_config(self, old: Any, new: Any) -> None:
        if self.book is not None:
            self.book.policy = self.cfg.policy

    def status_details(self) -> Mapping[str, Any]:
        if self.book is None:
            return {}
        pending = [c.campaign_id for c in self.book.consents() if c.decision in ("pending", "postponed")]
        return {"policy": self.cfg.policy, "waiting": pending}

    def _changed(self, consent: Consent) -> None:
        log.info("hmi_agent: campaign %s: %s (%s)", consent.campaign_id, consent.decision, consent.source)
        self.publish("hmi_agent.consent.changed", {"campaign_id": consent.campaign_id,
                                                   "decision": consent.decision, "source": consent.source})

    def handlers(self) -> dict[str, Handler]:
        async def request(call: Call) -> Any:
            consent, changed = await asyncio.to_thread(self._book().request, call.params["campaign_id"],
                                                       call.params["offer"])
            if changed:
                self._changed(consent)
            return consent.to_json()

        async def answer(call: Call) -> Any:
            p = call.params
            # the caller names itself (cli:alice); the kernel-checked uid is always kept with it
            source = f"{p.get('source', 'ipc')}@uid{call.peer.uid}"
            consent = await asyncio.to_thread(self._book().answer, p.get("campaign_id"), p["decision"], source)
            self._changed(consent)
            return consent.to_json()

        async def status(call: Call) -> Any:
            cid = call.params.get("campaign_id")
            book = self._book()
            consents = await asyncio.to_thread(book.consents, cid)
            audit = await asyncio.to_thread(book.audit, cid, call.params.get("audit_limit", 100))
            return {"policy": book.policy, "consents": [c.to_json() for c in consents], "audit": audit}

        async def display(call: Call) -> None:
            p = call.params
            progress = f" ({p['progress']:.0f} %)" if "progress" in p else ""
            log.info("hmi_agent: display [%s]%s: %s", p["campaign_id"], progress, p["text"])

        return {"hmi_agent.consent.request": request, "hmi_agent.consent.answer": answer,
                "hmi_agent.consent.status": status, "hmi_agent.display": display}

    def _book(self) -> ConsentBook:
        assert self.book is not None, "handlers run only after start()"
        return self.book


def main(argv: list[str] | None = None) -> int:
    return HmiDaemon.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

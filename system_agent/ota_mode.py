"""OTA mode under a lease, persisted: the engine holds it while it installs, and must keep renewing it.

:class:`OtaMode` is the state machine; I/O is injected: ``functional(request)``
sends a functional UDS request on every bus (``update_agent.functional`` over IPC in
the daemon), ``clock()`` is wall time (seconds since the epoch, so a lease survives a
restart), and the state lives in a small JSON file written atomically (temp file,
fsync, ``os.replace``) *before* the vehicle is touched:

* :meth:`enter`: persist ``active`` with the campaign and lease, then CommunicationControl
  disable and ControlDTCSetting off (functional, every bus). Entering again for the same
  campaign renews; another campaign is refused while one holds OTA mode. An ECU that
  refuses one of them (an NRC in the request's ``answers``, e.g. 0x22 conditionsNotCorrect)
  would keep talking or logging DTCs during the installation: the entry is undone (the
  exit requests are sent) and OTA mode ends inactive, its ``errors`` naming the ECU and
  the NRC, so the engine's ota_mode_on step fails. An ECU that does not answer is only
  reported in ``errors`` (functional requests were never confirmed before).
* :meth:`renew`: move the lease end (only for the holding campaign).
* :meth:`exit`: ControlDTCSetting on and CommunicationControl enable, then persist
  inactive. A failed request is reported (``errors``) and does not keep the vehicle in
  OTA mode on our side: the ECUs fall back to normal communication when their session
  times out anyway (no more TesterPresent).
* :meth:`expire`: the daemon calls it when the lease end passes: exit, reason
  ``lease_expired`` (the engine crashed or hung and stopped renewing).
* :meth:`restore`: at daemon start, from the file: a lease still running is kept (the
  caller restarts TesterPresent and re-sends the disable requests); an expired one is
  ended (``ended_after_restart``).

While active, the daemon sends functional TesterPresent (0x3E 0x80) every
``tester_present_interval`` so the ECUs stay in the session where communication is
disabled.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import OtaError, VehicleStateError

log = logging.getLogger(__name__)

#: sends a request; its result is ``update_agent.functional``'s (``answers``: every ECU's outcome)
Functional = Callable[[str], Awaitable[Any]]
ENTER_REQUESTS = ("communication_control_disable", "dtc_setting_off")
EXIT_REQUESTS = ("dtc_setting_on", "communication_control_enable")


@dataclass
class ModeState:
    active: bool = False
    campaign_id: str | None = None
    lease_expires_at: float | None = None
    errors: list[str] = field(default_factory=list)


class OtaMode:
    """See the module docstring."""

    def __init__(self, path: Path, functional: Functional, *, clock: Callable[[], float] = time.time,
                 max_lease: float = 3600.0) -> None:
        self.path = path
        self.functional = functional
        self.clock = clock
        self.max_lease = max_lease
        self.state = self._load()

    # -- persistence ------------------------------------------------------------------------------
    def _load(self) -> ModeState:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return ModeState()
        except (OSError, ValueError) as e:
            # unreadable: assume OTA mode may be on, so restore() ends it (re-enables communication)
            log.error("ota mode: state file %s unreadable (%s): treating OTA mode as expired", self.path, e)
            return ModeState(active=True, campaign_id=None, lease_expires_at=0.0)
        return ModeState(active=bool(data.get("active")), campaign_id=data.get("campaign_id"),
                         lease_expires_at=data.get("lease_expires_at"), errors=list(data.get("errors", [])))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(asdict(self.state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # -- views --------------------------------------------------------------------------------------
    def remaining(self) -> float | None:
        if not self.state.active or self.state.lease_expires_at is None:
            return None
        return max(0.0, self.state.lease_expires_at - self.clock())

    def to_json(self) -> dict[str, Any]:
        return {"active": self.state.active, "campaign_id": self.state.campaign_id,
                "lease_expires_at": self.state.lease_expires_at if self.state.active else None,
                "lease_remaining_s": self.remaining(), "errors": list(self.state.errors)}

    def _lease(self, lease_s: float) -> float:
        if not 0 < lease_s <= self.max_lease:
            raise VehicleStateError(f"lease of {lease_s:g} s refused: must be within 0..{self.max_lease:g} s")
        return self.clock() + lease_s

    # -- transitions --------------------------------------------------------------------------------
    async def enter(self, campaign_id: str, lease_s: float) -> bool:
        """Enter (True) or renew for the holding campaign (False)."""
        expires = self._lease(lease_s)
        if self.state.active:
            if self.state.campaign_id != campaign_id:
                raise VehicleStateError(f"OTA mode is held by campaign {self.state.campaign_id!r}; "
                                        f"campaign {campaign_id!r} cannot enter it")
            self.state.lease_expires_at = expires
            self._save()
            return False
        self.state = ModeState(True, campaign_id, expires, [])
        self._save()  # before touching the vehicle: a crash from here on ends in exit at restart
        refusals: list[str] = []
        self.state.errors = await self._send(ENTER_REQUESTS, refusals)
        if refusals:
            log.error("ota mode: entry refused (%s): leaving OTA mode", "; ".join(refusals))
            undone = await self._send(EXIT_REQUESTS)
            self.state = ModeState(False, campaign_id, None, self.state.errors + undone)
        self._save()
        return True

    async def renew(self, campaign_id: str, lease_s: float) -> None:
        if not self.state.active or self.state.campaign_id != campaign_id:
            holder = f"held by {self.state.campaign_id!r}" if self.state.active else "not active"
            raise VehicleStateError(f"cannot renew OTA mode for campaign {campaign_id!r}: OTA mode is {holder}")
        self.state.lease_expires_at = self._lease(lease_s)
        self._save()

    async def exit(self, campaign_id: str | None) -> bool:
        """Leave OTA mode (True), or nothing to do (False); ``campaign_id`` None: whoever holds it."""
        if not self.state.active:
            return False
        if campaign_id is not None and self.state.campaign_id not in (None, campaign_id):
            raise VehicleStateError(f"OTA mode is held by campaign {self.state.campaign_id!r}, "
                                    f"not {campaign_id!r}")
        errors = await self._send(EXIT_REQUESTS)
        self.state = ModeState(False, self.state.campaign_id, None, errors)
        self._save()
        return True

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    async def expire(self) -> bool:
        """Exit if the lease has run out (True if it did)."""
        if not self.expired():
            return False
        log.warning("ota mode: lease of campaign %s expired: leaving OTA mode", self.state.campaign_id)
        return await self.exit(None)

    async def restore(self) -> str | None:
        """At start: ``"restored"`` (lease running, requests re-sent), ``"ended_after_restart"`` or None."""
        if not self.state.active:
            return None
        if self.expired():
            await self.exit(None)
            return "ended_after_restart"
        self.state.errors = await self._send(ENTER_REQUESTS)
        self._save()
        return "restored"

    async def keep_alive(self) -> None:
        """One functional TesterPresent (errors logged: the next one may get through)."""
        for error in await self._send(("tester_present",)):
            log.warning("ota mode: %s", error)

    async def _send(self, requests: tuple[str, ...], refusals: list[str] | None = None) -> list[str]:
        """Send each request; returns the errors (failed requests, ECUs refusing or not answering).

        With ``refusals``: the ECUs' refusals (NRCs) are also appended there, and the requests
        after the first refused one are not sent.
        """
        errors = []
        for request in requests:
            try:
                result = await self.functional(request)
            except OtaError as e:
                errors.append(f"{request}: {e}")
                log.error("ota mode: functional %s failed: %s", request, e)
                continue
            answers = result.get("answers", []) if isinstance(result, dict) else []
            for answer in answers:
                if answer["outcome"] == "positive":
                    continue
                text = _describe(request, answer)
                errors.append(text)
                if answer["outcome"] == "negative" and refusals is not None:
                    refusals.append(text)
            if refusals:
                break
        return errors


def _describe(request: str, answer: dict[str, Any]) -> str:
    """``dtc_setting_off: body (bus body) refused 8502: NRC 0x22 conditionsNotCorrect``."""
    where = f"{request}: {answer['ecu']} (bus {answer['bus']})"
    if answer["outcome"] == "negative":
        return f"{where} refused {answer['request']}: NRC {answer['nrc']:#04x} {answer['nrc_name']}"
    return f"{where}: no answer to {answer['request']} within {answer['waited_s']:.3f} s"

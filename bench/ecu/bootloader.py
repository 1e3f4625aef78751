"""The UDS server core of a simulated ECU bootloader: request bytes in, response bytes out.

:class:`Bootloader` does no I/O besides its state directory and reads no
clock: every call carries ``now`` (seconds, monotonic). Long operations (the
erase routine) become a pending operation: :meth:`Bootloader.handle` answers
NRC 0x78 at once, :meth:`Bootloader.poll` yields another 0x78 every
``response_pending_interval`` and the final response once ``now`` passes the
end. The transport adapter calls ``poll`` at :meth:`Bootloader.next_deadline`.

Dispatch follows ISO 14229-1: the suppressPosRspMsgIndicationBit drops
positive answers (but never the final answer after a 0x78); functionally
addressed requests only reach 0x10/0x11/0x22/0x28/0x3E/0x85 and never get the
NRCs 0x11/0x12/0x31/0x7E/0x7F; a non-default session falls back to default
after S3 without a request, relocking security. Why hand-written: udsoncan
and can-isotp are tester-side; no maintained Python library is a UDS server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from udsoncan.ResponseCode import ResponseCode

from agent.config.vehicle import EcuConfig
from agent.errors import ConfigurationError
from bench.appimage import build_image
from bench.ecu import session as sess
from bench.ecu.codec import (
    SID_COMM_CONTROL,
    SID_DTC_SETTING,
    SID_READ_DID,
    SID_REQUEST_DOWNLOAD,
    SID_RESET,
    SID_ROUTINE,
    SID_SECURITY,
    SID_SESSION,
    SID_TESTER_PRESENT,
    SID_TRANSFER_DATA,
    SID_TRANSFER_EXIT,
    SID_WRITE_DID,
    SUBFUNCTION_SERVICES,
    SUPPRESSED_ON_FUNCTIONAL,
    NrcError,
    Response,
    negative,
    nrc_name,
    positive,
)
from bench.ecu.dids import (
    ACTIVE_SESSION,
    BOOT_SOFTWARE,
    CONFIG,
    FINGERPRINT,
    HARDWARE_VERSION,
    PART_NUMBER,
    SERIAL_NUMBER,
    SOFTWARE_VERSION,
    VIN,
    DidSpec,
    build_did_table,
    valid_fingerprint,
)
from bench.ecu.faults import FaultPlan
from bench.ecu.flash import FlashBank
from bench.ecu.programming import Programming, ResetRequested
from bench.ecu.security import SecurityAccess
from bench.ecu.simconfig import SimConfig
from bench.ecu.store import EcuStore

log = logging.getLogger(__name__)

#: services a functionally addressed request may carry
FUNCTIONAL_SERVICES = frozenset({SID_SESSION, SID_RESET, SID_READ_DID, SID_COMM_CONTROL, SID_TESTER_PRESENT,
                                 SID_DTC_SETTING})
RID_ERASE = 0xFF00
RID_CHECK_MEMORY = 0x0202
RID_CHECK_DEPENDENCIES = 0xFF01
RID_CHECK_PRECONDITIONS = 0x0203
RID_ACTIVATE = 0x0210
RID_REVERT = 0x0211
MAX_RESPONSE = 4095

_E = ResponseCode  # short alias for the NRC constants


@dataclass
class _Deferred:
    """A positive answer that comes after ``duration`` seconds of NRC 0x78."""

    duration: float
    final: Response


@dataclass
class _Pending:
    sid: int
    end: float
    next_pending: float
    final: Response
    #: NRC 0x78 still to send once ``end`` has passed (fault knob pending_storm)
    storm: int = 0


class Bootloader:
    """One simulated ECU: its state, its flash, its UDS services."""

    def __init__(self, ecu: EcuConfig, sim: SimConfig, store: EcuStore, *, now: float,
                 rng: Callable[[int], bytes] = os.urandom) -> None:
        self.ecu = ecu
        self.sim = sim
        self.name = ecu.name
        self.store = store
        self.faults = FaultPlan(sim.faults, ecu.name)
        self.dids = build_did_table(ecu, sim)
        self.session = sess.SessionState(s3=sim.session_timeout, last_activity=now)
        self.security = SecurityAccess(level=ecu.security.level, algorithm=ecu.security.load(),
                                       params=ecu.security.params, sim=sim.security, rng=rng,
                                       faults=self.faults, ecu=ecu.name)
        self.persisted = store.open(self._initialise)
        try:
            for cd in sim.config_dids:
                value = self.persisted.config_dids.setdefault(cd.name, cd.initial)
                if len(value) != cd.size:
                    raise ConfigurationError(
                        f"configuration DID {cd.name!r} is stored with {len(value)} bytes, the config now "
                        f"says {cd.size}; remove the directory or use another --state-dir",
                        source=str(store.meta_path))
            self.programming = Programming(ecu, sim, store, self.persisted, self.faults)
            self.programming.boot()
        except BaseException:
            store.close()
            raise
        self._pending: _Pending | None = None
        self._deaf_until = now
        self.resets = 0
        self.tester_present = 0
        self._handlers: dict[int, Callable[[bytes, float], Response | _Deferred]] = {
            SID_SESSION: self._session_control,
            SID_RESET: self._ecu_reset,
            SID_SECURITY: self._security_access,
            SID_TESTER_PRESENT: self._tester_present,
            SID_COMM_CONTROL: self._communication_control,
            SID_DTC_SETTING: self._control_dtc_setting,
            SID_READ_DID: self._read_did,
            SID_WRITE_DID: self._write_did,
            SID_ROUTINE: self._routine_control,
            SID_REQUEST_DOWNLOAD: self._request_download,
            SID_TRANSFER_DATA: self._transfer_data,
            SID_TRANSFER_EXIT: self._transfer_exit,
        }
        self._reset_requested = False

    def _initialise(self, bank: FlashBank) -> None:
        region = self.ecu.memory.regions[0]
        image = build_image(self.sim.software_version, self.sim.part_number, self.sim.initial_image_size)
        bank.program(region.start, image)
        log.info("%s: first start, bank A holds %s %s (%d bytes at %#x)", self.name, self.sim.part_number,
                 self.sim.software_version, len(image), region.start)

    def close(self) -> None:
        self.store.close()

    # -- the public surface -----------------------------------------------------
    @property
    def software_version(self) -> str:
        running = self.programming.running
        return running.software_version if running is not None else self.sim.boot_marker

    def listening(self, now: float) -> bool:
        """False while the ECU reboots after a reset (``sim.reset_time``): frames go unheard."""
        return now >= self._deaf_until

    def handle(self, request: bytes, now: float, *, functional: bool = False) -> list[Response]:
        """Answer one request received at ``now``; an empty list means no answer."""
        if now < self._deaf_until or not request:
            return []  # rebooting, or nothing to answer
        self._check_s3(now)
        sid = request[0]
        if self._pending is not None:
            return self._while_pending(request, now, functional)
        if functional and sid not in FUNCTIONAL_SERVICES:
            return []
        self.faults.count_request(sid)
        suppress = sid in SUBFUNCTION_SERVICES and len(request) >= 2 and bool(request[1] & 0x80)
        handler = self._handlers.get(sid)
        result: Response | _Deferred
        try:
            if handler is None:
                raise NrcError(_E.ServiceNotSupported, f"service {sid:#04x}")
            refused = self.faults.request_nrc(sid)
            if refused is not None:
                raise NrcError(refused, "fault knob refuse_request")
            result = handler(request, now)
        except NrcError as e:
            log.info("%s: %s -> %s", self.name, _describe(request), e)
            result = negative(sid, e.nrc)
        except ResetRequested:
            self._reset(now, cause="fault: reset in the middle of a transfer")
            return []
        self.session.touch(now)
        # fault knob: the work is done, the answer waits behind ``storm`` NRC 0x78 (after any of its own)
        storm = 0 if functional else self.faults.pending_storm(sid)
        if isinstance(result, _Deferred) or storm:
            deferred = result if isinstance(result, _Deferred) else _Deferred(0.0, result)
            if deferred.duration > 0 or storm:
                own = deferred.duration > 0  # the 0x78 sent now is the operation's own, else the storm's first
                self._pending = _Pending(sid, now + deferred.duration, now + self.sim.response_pending_interval,
                                         deferred.final, storm=storm if own else storm - 1)
                return [negative(sid, _E.RequestCorrectlyReceived_ResponsePending)]
            result = deferred.final
        answers = self._finish(sid, result, suppress=suppress, functional=functional)
        if self._reset_requested:
            self._reset_requested = False
            self._reset(now, cause="ECUReset")
        return answers

    def apply_broadcast(self, values: dict[str, int], now: float) -> list[str]:
        """A configuration broadcast heard: store each mapped signal's value; returns the DIDs set.

        Applied only while the application runs (a bootloader in the programming session or an
        ECU rebooting does not take part), persisted like a UDS write.
        """
        cfg = self.sim.config_broadcast
        if cfg is None or not self.application_running(now):
            return []
        if self.faults.switch("ignore_config_broadcast"):
            return []
        sizes = {cd.name: cd.size for cd in self.sim.config_dids}
        applied = []
        for signal, name in cfg.signals.items():
            if signal not in values:
                continue  # another branch of a multiplexed message
            value = values[signal]
            if not 0 <= value < 1 << (8 * sizes[name]):
                log.warning("%s: broadcast %s=%s does not fit DID %s", self.name, signal, value, name)
                continue
            self.persisted.config_dids[name] = value.to_bytes(sizes[name], "big")
            applied.append(name)
        if applied:
            self.programming.save()
            log.info("%s: configuration broadcast applied: %s", self.name, ", ".join(applied))
        return applied

    def poll(self, now: float) -> list[Response]:
        """Advance the timers to ``now``: S3, the pending operation's 0x78s and its final answer."""
        pending = self._pending
        if pending is None:
            self._check_s3(now)
            return []
        if now >= pending.end and pending.storm <= 0:
            self._pending = None
            self.session.touch(now)
            return self._finish(pending.sid, pending.final, suppress=False, functional=False)
        if now >= pending.next_pending:
            pending.next_pending = now + self.sim.response_pending_interval
            if now >= pending.end:
                pending.storm -= 1
            return [negative(pending.sid, _E.RequestCorrectlyReceived_ResponsePending)]
        return []

    def application_running(self, now: float) -> bool:
        """The application runs: a valid image, not rebooting, not in the programming session."""
        return (self.programming.running is not None and now >= self._deaf_until
                and self.session.session != sess.PROGRAMMING)

    def next_deadline(self, now: float | None = None) -> float | None:
        """When :meth:`poll` has something to do next (None: only on the next request)."""
        if now is not None and now < self._deaf_until:
            return self._deaf_until  # the end of a reboot
        if self._pending is not None:
            p = self._pending
            return p.next_pending if p.storm > 0 else min(p.end, p.next_pending)
        if self.session.session != sess.DEFAULT:
            return self.session.last_activity + self.session.s3
        return None

    def status(self, now: float | None = None) -> dict[str, Any]:
        """A snapshot for ``status.json``: what a test or an engineer wants to see."""
        locked_until = self.security.locked_until
        p = self.programming
        comm_ctrl, comm_type = self.session.comm_control
        pending = self.persisted.pending_bank
        return {
            "ecu": self.name,
            "session": self.session.name,
            "security_unlocked": self.security.unlocked,
            "security_failed_attempts": self.security.failed_attempts,
            "security_locked_out": locked_until is not None and (now is None or now < locked_until),
            "communication_control": {"control_type": comm_ctrl, "communication_type": comm_type},
            "dtc_setting": "on" if self.session.dtc_setting_on else "off",
            "software_version": self.software_version,
            "application_valid": p.running is not None,
            "banks": self.ecu.banks,
            "active_bank": "AB"[p.active],
            "pending_bank": None if pending is None else "AB"[pending],
            "transfer_active": p.transfer is not None,
            "fingerprint": self.persisted.fingerprint.hex(),
            "resets": self.resets,
            "tester_present": self.tester_present,
            "faults_fired": [f"{knob}: {detail}" for knob, detail in self.faults.fired],
            "pending_service": None if self._pending is None else self._pending.sid,
            "config_dids": {name: value.hex() for name, value in sorted(self.persisted.config_dids.items())},
        }

    # -- dispatch helpers -------------------------------------------------------
    def _finish(self, sid: int, result: Response, *, suppress: bool, functional: bool) -> list[Response]:
        nrc = result.nrc
        if nrc is None and suppress:
            return []
        if functional and nrc in SUPPRESSED_ON_FUNCTIONAL:
            return []
        if self.faults.drop_response(sid):
            return []
        return [result]

    def _while_pending(self, request: bytes, now: float, functional: bool) -> list[Response]:
        """A request while an operation is running: keep-alive is fine, the rest is busy."""
        sid = request[0]
        if sid == SID_TESTER_PRESENT and len(request) == 2 and request[1] & 0x7F == 0:
            self.tester_present += 1
            return [] if functional or request[1] & 0x80 else [positive(sid, b"\x00")]
        if functional:
            return []
        return [negative(sid, _E.BusyRepeatRequest)]

    def _check_s3(self, now: float) -> None:
        if self._pending is None and self.session.expired(now):
            log.info("%s: S3 timeout in %s session, back to default", self.name, self.session.name)
            self._enter_session(sess.DEFAULT)

    def _enter_session(self, session: int) -> None:
        # ISO 14229-1: every session transition relocks security and ends what ran
        self.security.relock()
        self.programming.end_sequence()
        self.session.enter(session)

    def _reset(self, now: float, *, cause: str) -> None:
        log.info("%s: reset (%s)", self.name, cause)
        self.resets += 1
        self._pending = None
        self.security.relock()
        self.session.enter(sess.DEFAULT)
        self.programming.boot()
        self.session.touch(now)
        self._deaf_until = now + self.sim.reset_time

    def _require(self, *, sessions: tuple[int, ...], nrc: int, security: bool = False) -> None:
        if self.session.session not in sessions:
            raise NrcError(nrc, f"not available in the {self.session.name} session")
        if security and not self.security.unlocked:
            raise NrcError(_E.SecurityAccessDenied, "security access required")

    # -- services -----------------------------------------------------------------
    def _session_control(self, req: bytes, now: float) -> Response:
        if len(req) != 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        target = req[1] & 0x7F
        if target not in sess.NAMES:
            raise NrcError(_E.SubFunctionNotSupported, f"session {target:#04x}")
        if target == sess.PROGRAMMING and self.session.session == sess.DEFAULT:
            raise NrcError(_E.ConditionsNotCorrect, "programming session only from the extended session")
        self._enter_session(target)
        log.info("%s: %s session", self.name, self.session.name)
        p2 = round(self.sim.p2 * 1000)
        p2_star = round(self.sim.p2_star * 100)
        return positive(SID_SESSION, bytes([target]) + p2.to_bytes(2, "big") + p2_star.to_bytes(2, "big"))

    def _ecu_reset(self, req: bytes, now: float) -> Response:
        if len(req) != 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        kind = req[1] & 0x7F
        if kind not in (0x01, 0x02, 0x03):  # hard, key off/on, soft
            raise NrcError(_E.SubFunctionNotSupported, f"reset type {kind:#04x}")
        self._reset_requested = True  # after the answer is on its way
        return positive(SID_RESET, bytes([kind]))

    def _security_access(self, req: bytes, now: float) -> Response:
        self._require(sessions=(sess.EXTENDED, sess.PROGRAMMING), nrc=_E.ServiceNotSupportedInActiveSession)
        if len(req) < 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        level = req[1] & 0x7F
        if level % 2:
            seed = self.security.request_seed(level, now)
            return positive(SID_SECURITY, bytes([level]) + seed)
        if len(req) < 3:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat, "sendKey without a key")
        self.security.send_key(level, req[2:], now)
        log.info("%s: security access granted (level %#04x)", self.name, level - 1)
        return positive(SID_SECURITY, bytes([level]))

    def _tester_present(self, req: bytes, now: float) -> Response:
        if len(req) != 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        if req[1] & 0x7F != 0:
            raise NrcError(_E.SubFunctionNotSupported)
        self.tester_present += 1
        return positive(SID_TESTER_PRESENT, b"\x00")

    def _communication_control(self, req: bytes, now: float) -> Response:
        self._require(sessions=(sess.EXTENDED, sess.PROGRAMMING), nrc=_E.ServiceNotSupportedInActiveSession)
        if len(req) < 3:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        control = req[1] & 0x7F
        if control > 0x05:
            raise NrcError(_E.SubFunctionNotSupported, f"controlType {control:#04x}")
        if len(req) != (5 if control in (0x04, 0x05) else 3):
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        comm_type = req[2]
        if comm_type & 0x03 == 0:
            raise NrcError(_E.RequestOutOfRange, f"communicationType {comm_type:#04x}")
        self.session.comm_control = (control, comm_type)
        log.info("%s: communication control %#04x type %#04x", self.name, control, comm_type)
        return positive(SID_COMM_CONTROL, bytes([control]))

    def _control_dtc_setting(self, req: bytes, now: float) -> Response:
        self._require(sessions=(sess.EXTENDED, sess.PROGRAMMING), nrc=_E.ServiceNotSupportedInActiveSession)
        if len(req) < 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        setting = req[1] & 0x7F
        if setting not in (0x01, 0x02):
            raise NrcError(_E.SubFunctionNotSupported, f"DTCSettingType {setting:#04x}")
        self.session.dtc_setting_on = setting == 0x01
        log.info("%s: DTC setting %s", self.name, "on" if setting == 0x01 else "off")
        return positive(SID_DTC_SETTING, bytes([setting]))

    def _did_value(self, spec: DidSpec) -> bytes:
        kind = spec.kind
        if kind == SOFTWARE_VERSION:
            return self.software_version.encode("ascii")
        if kind == FINGERPRINT:
            return self.persisted.fingerprint
        if kind == CONFIG:
            return self.persisted.config_dids[spec.name]
        if kind == ACTIVE_SESSION:
            return bytes([self.session.session])
        text = {PART_NUMBER: self.sim.part_number, HARDWARE_VERSION: self.sim.hardware_version,
                SERIAL_NUMBER: self.sim.serial_number, VIN: self.sim.vin,
                BOOT_SOFTWARE: self.sim.boot_marker}[kind]
        return text.encode("ascii")

    def _read_did(self, req: bytes, now: float) -> Response:
        if len(req) < 3 or len(req) % 2 == 0:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        out = bytearray()
        for i in range(1, len(req), 2):
            did = int.from_bytes(req[i:i + 2], "big")
            spec = self.dids.get(did)
            if spec is not None:  # ISO: unsupported DIDs among supported ones are left out
                out += req[i:i + 2] + self._did_value(spec)
        if not out:
            raise NrcError(_E.RequestOutOfRange, "no supported DID requested")
        if len(out) + 1 > MAX_RESPONSE:
            raise NrcError(_E.ResponseTooLong)
        return positive(SID_READ_DID, bytes(out))

    def _write_did(self, req: bytes, now: float) -> Response:
        self._require(sessions=(sess.EXTENDED, sess.PROGRAMMING), nrc=_E.ServiceNotSupportedInActiveSession)
        if len(req) < 4:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        did = int.from_bytes(req[1:3], "big")
        value = req[3:]
        spec = self.dids.get(did)
        if spec is None or spec.write_size is None:
            raise NrcError(_E.RequestOutOfRange, f"DID {did:#06x} is not writable")
        if spec.kind == FINGERPRINT and self.session.session != sess.PROGRAMMING:
            raise NrcError(_E.RequestOutOfRange, "the fingerprint is written in the programming session")
        if not self.security.unlocked:
            raise NrcError(_E.SecurityAccessDenied, "security access required")
        if len(value) != spec.write_size:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat,
                           f"DID {did:#06x} takes {spec.write_size} bytes, got {len(value)}")
        if spec.kind == FINGERPRINT:
            if not valid_fingerprint(value):
                raise NrcError(_E.RequestOutOfRange, "fingerprint date is not BCD YYMMDD")
            self.persisted.fingerprint = value
        else:
            refused = self.faults.config_write_nrc(did)
            if refused is not None:
                raise NrcError(refused, f"fault knob refuse_config_write on DID {did:#06x}")
            self.persisted.config_dids[spec.name] = value
        self.programming.save()
        log.info("%s: DID %#06x written: %s", self.name, did, value.hex())
        return positive(SID_WRITE_DID, req[1:3])

    def _routine_control(self, req: bytes, now: float) -> Response | _Deferred:
        if len(req) < 4:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        control = req[1] & 0x7F
        rid = int.from_bytes(req[2:4], "big")
        record = req[4:]
        if control not in (0x01, 0x02, 0x03):
            raise NrcError(_E.SubFunctionNotSupported)
        self._require(sessions=(sess.EXTENDED, sess.PROGRAMMING), nrc=_E.ServiceNotSupportedInActiveSession)
        if rid not in (RID_ERASE, RID_CHECK_MEMORY, RID_CHECK_DEPENDENCIES, RID_CHECK_PRECONDITIONS,
                       RID_ACTIVATE, RID_REVERT):
            raise NrcError(_E.RequestOutOfRange, f"routine {rid:#06x} not supported")
        if control != 0x01:
            raise NrcError(_E.SubFunctionNotSupported, "only startRoutine is supported")
        head = bytes([control]) + req[2:4]
        if rid == RID_CHECK_PRECONDITIONS:
            return positive(SID_ROUTINE, head + bytes([self.programming.check_preconditions()]))
        self._require(sessions=(sess.PROGRAMMING,), nrc=_E.RequestOutOfRange, security=True)
        if rid == RID_ERASE:
            duration = self.programming.erase(record)
            return _Deferred(duration, positive(SID_ROUTINE, head + b"\x00"))
        if rid == RID_CHECK_MEMORY:
            status = self.programming.check_memory(record)
        elif rid == RID_CHECK_DEPENDENCIES:
            status = self.programming.check_dependencies()
        elif rid == RID_ACTIVATE:
            status = self.programming.activate()
        else:
            status = self.programming.revert()
        return positive(SID_ROUTINE, head + bytes([status]))

    def _request_download(self, req: bytes, now: float) -> Response:
        self._require(sessions=(sess.PROGRAMMING,), nrc=_E.UploadDownloadNotAccepted, security=True)
        return positive(SID_REQUEST_DOWNLOAD, self.programming.request_download(req[1:]))

    def _transfer_data(self, req: bytes, now: float) -> Response:
        if len(req) < 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat)
        if self.session.session != sess.PROGRAMMING:
            raise NrcError(_E.RequestSequenceError, "no download active")
        self.programming.transfer_data(req[1], req[2:], len(req))
        return positive(SID_TRANSFER_DATA, req[1:2])

    def _transfer_exit(self, req: bytes, now: float) -> Response:
        if self.session.session != sess.PROGRAMMING:
            raise NrcError(_E.RequestSequenceError, "no download active")
        self.programming.transfer_exit()
        return positive(SID_TRANSFER_EXIT)


def _describe(request: bytes) -> str:
    head = request[:4].hex(" ")
    return f"[{head}{' ...' if len(request) > 4 else ''}]"


__all__ = ["Bootloader", "Response", "nrc_name"]

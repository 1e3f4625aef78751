"""The flash sequencer: runs a flash script against a UDS session. No I/O of its own.

The session (:class:`~update_agent.uds.api.UdsSession`), the clock, the sleep
between polls and today's date are injected, so the whole sequence - segment
mapping, erase ranges, block sizes, the block sequence counter and its wrap,
CRC, routine status checks, failure handling - runs in tests against an
in-memory session, and on the bench against a real ECU over the same code.

Errors come out as the stack's errors of the same branch, prefixed with the
ECU, the step and the request, e.g.
``engine: step 'erase' (routine FF00): NRC 0x72 generalProgrammingFailure``.
After a failed step the script's ``on_failure`` steps run best effort, so
the ECU is left where a real tester would leave it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

from agent.config.vehicle import EcuConfig, MemoryRegion
from agent.errors import (
    ConfigurationError,
    NegativeResponseError,
    OtaError,
    OtaTimeoutError,
    ProtocolError,
    VehicleStateError,
    VerificationError,
)
from update_agent.flashscript import (
    CommunicationControlStep,
    DownloadStep,
    DtcSettingStep,
    FingerprintStep,
    FlashScript,
    ResetStep,
    RoutineStep,
    SecurityAccessStep,
    SessionStep,
    Step,
    TesterPresentStep,
    WaitForResetStep,
)
from update_agent.images import FlashImage, map_segments
from update_agent.result import FlashResult, ProgressEvent, StepResult
from update_agent.uds.api import UdsSession

#: largest ISO-TP message a classic receiver takes without the >4095 escape (can-isotp max_frame_size default)
ISOTP_MAX_FRAME = 4095
TESTER_ID_LENGTH = 6
_FAILURES: dict[str, type[OtaError]] = {
    "verification": VerificationError, "vehicle_state": VehicleStateError, "protocol": ProtocolError,
}
_ROUTINE_NAMES = {
    "erase": "eraseMemory", "check_memory": "checkMemory",
    "check_dependencies": "checkProgrammingDependencies",
    "check_preconditions": "checkProgrammingPreconditions", "activate": "activateInactiveBank",
    "revert": "revertToPreviousBank",
}

ProgressCallback = Callable[[ProgressEvent], None]


def fingerprint(today: date, tester_id: bytes) -> bytes:
    """F15A: programming date YYMMDD as BCD (3 bytes) + the tester's 6-byte serial."""
    digits = f"{today.year % 100:02d}{today.month:02d}{today.day:02d}"
    return bytes.fromhex(digits) + tester_id


def block_counters(first: int = 1) -> Callable[[int], int]:
    """blockSequenceCounter of the n-th block (0-based) after a RequestDownload: 1, 2, .. 0xFF, 0x00, 1 .."""
    return lambda n: (first + n) & 0xFF


class FlashSequencer:
    """Runs one flash script for one ECU and image; :meth:`run` returns the structured result."""

    def __init__(self, *, ecu: EcuConfig, script: FlashScript, image: FlashImage,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 today: Callable[[], date] = date.today, tester_id: bytes = b"OTACTL",
                 progress: ProgressCallback | None = None) -> None:
        if len(tester_id) != TESTER_ID_LENGTH:
            raise ConfigurationError(f"tester id must be {TESTER_ID_LENGTH} bytes, got {len(tester_id)}")
        script.check_banks(ecu.name, ecu.banks)
        self.ecu = ecu
        self.script = script
        self.image = image
        self.mapped = map_segments(image, ecu.memory, ecu.name)  # refuses an image outside the map
        self._clock = clock
        self._sleep = sleep
        self._today = today
        self._tester_id = tester_id
        self._progress = progress
        self._step = StepResult("", "")
        self._context = ""
        self._t0 = 0.0
        self._result: FlashResult | None = None

    # -- observer (the session reports NRCs and re-sends here) ---------------
    def on_nrc(self, service: int, nrc: int) -> None:
        self._step.nrcs[nrc] = self._step.nrcs.get(nrc, 0) + 1

    def on_retry(self, service: int, attempt: int, reason: str) -> None:
        self._step.retries += 1

    # -- running ------------------------------------------------------------
    def new_result(self) -> FlashResult:
        """The result of this ECU, script and image before any step ran."""
        return FlashResult(ecu=self.ecu.name, script=self.script.family, image=self.image.source,
                           image_size=self.image.size, image_crc32=self.image.crc32,
                           segments=len(self.image.segments), banks=self.ecu.banks)

    def run(self, session: UdsSession) -> FlashResult:
        result = self.new_result()
        self._result = result
        self._t0 = self._clock()
        session.set_observer(self)
        try:
            total = len(self.script.steps)
            for index, step in enumerate(self.script.steps):
                record = self._begin(step, index, total, result.steps)
                if record.status == "skipped":
                    continue
                try:
                    self._run_step(step, session, result)
                except OtaError as e:
                    error = self._in_step(e, step)
                    self._end(record, index, total, error)
                    result.error = error
                    result.failed_step = step.name
                    break
                self._end(record, index, total, None)
            if result.error is not None:
                self._cleanup(session, result)
        finally:
            try:
                session.keep_alive(False)
            finally:
                session.set_observer(None)
            result.duration = self._clock() - self._t0
        return result

    def _cleanup(self, session: UdsSession, result: FlashResult) -> None:
        total = len(self.script.on_failure)
        for index, step in enumerate(self.script.on_failure):
            record = self._begin(step, index, total, result.cleanup)
            if record.status == "skipped":
                continue
            try:
                self._run_step(step, session, result)
            except OtaError as e:  # best effort: the first error is the one reported
                self._end(record, index, total, self._in_step(e, step))
                continue
            self._end(record, index, total, None)

    def _begin(self, step: Step, index: int, total: int, into: list[StepResult]) -> StepResult:
        record = StepResult(name=step.name, action=_action(step), started=self._clock() - self._t0)
        into.append(record)
        self._step = record
        self._context = ""
        if not step.applies_to(self.ecu.banks):
            record.status = "skipped"
            record.detail = f"only for {step.only} bank ECUs"
            self._emit(step.name, "step_skipped", index, total)
        else:
            self._emit(step.name, "step_started", index, total)
        return record

    def _end(self, record: StepResult, index: int, total: int, error: OtaError | None) -> None:
        record.duration = self._clock() - self._t0 - record.started
        record.status = "ok" if error is None else "failed"
        record.error = None if error is None else str(error)
        self._emit(record.name, "step_finished" if error is None else "step_failed", index, total)

    def _emit(self, step: str, kind: str, index: int, total: int) -> None:
        if self._progress is None:
            return
        result = self._result
        self._progress(ProgressEvent(
            ecu=self.ecu.name, step=step, kind=kind, index=index, total_steps=total,
            bytes_done=result.bytes_transferred if result else 0, bytes_total=self.image.size,
            blocks_done=result.blocks if result else 0))

    def _in_step(self, error: OtaError, step: Step) -> OtaError:
        """The same kind of error, its message naming the ECU, the step and the request."""
        where = f" ({self._context})" if self._context else ""
        message = f"{self.ecu.name}: step '{step.name}'{where}: {error}"
        new: OtaError
        if isinstance(error, NegativeResponseError):
            new = NegativeResponseError(message, service=error.service, nrc=error.nrc)
        else:
            try:
                new = type(error)(message)
            except TypeError:
                new = OtaError(message)
                new.exit_code = error.exit_code
        new.__cause__ = error
        return new

    # -- steps --------------------------------------------------------------
    def _run_step(self, step: Step, session: UdsSession, result: FlashResult) -> None:
        if isinstance(step, SessionStep):
            self._context = f"DiagnosticSessionControl {step.session:#04x}"
            timing = session.change_session(step.session)
            if timing.p2 is not None and timing.p2_star is not None:
                self._step.detail = f"ECU P2 {timing.p2 * 1000:g} ms, P2* {timing.p2_star:g} s"
        elif isinstance(step, TesterPresentStep):
            self._context = "TesterPresent 0x3E 0x80 functional"
            session.keep_alive(step.enabled)
        elif isinstance(step, SecurityAccessStep):
            self._security_access(step, session)
        elif isinstance(step, FingerprintStep):
            self._context = f"WriteDataByIdentifier {step.did:04X}"
            data = fingerprint(self._today(), self._tester_id)
            session.write_did(step.did, data)
            self._step.detail = data.hex()
        elif isinstance(step, RoutineStep):
            self._routine(step, session)
        elif isinstance(step, DownloadStep):
            self._download(step, session, result)
        elif isinstance(step, DtcSettingStep):
            self._context = f"ControlDTCSetting {0x01 if step.enabled else 0x02:#04x}"
            session.control_dtc_setting(step.enabled)
        elif isinstance(step, CommunicationControlStep):
            self._context = f"CommunicationControl {step.control:#04x} {step.communication_type:#04x}"
            session.communication_control(step.control, step.communication_type)
        elif isinstance(step, ResetStep):
            self._context = f"ECUReset {step.reset_type:#04x}"
            session.ecu_reset(step.reset_type)
        elif isinstance(step, WaitForResetStep):
            self._wait_for_reset(step, session)
        else:  # pragma: no cover - the loader only builds the types above
            raise ConfigurationError(f"step {step.name!r}: unsupported step type {type(step).__name__}")

    def _security_access(self, step: SecurityAccessStep, session: UdsSession) -> None:
        level = step.level if step.level is not None else self.ecu.security.level
        self._context = f"SecurityAccess {level:#04x} requestSeed"
        seed = session.request_seed(level)
        if not any(seed):
            self._step.detail = f"level {level:#04x} already unlocked (zero seed)"
            return
        algorithm = self.ecu.security.load()
        try:
            key = bytes(algorithm(seed, level, dict(self.ecu.security.params)))
        except Exception as e:  # an OEM algorithm failing is a configuration problem, say which
            raise ConfigurationError(f"seed/key algorithm {self.ecu.security.algorithm} failed: {e}") from e
        self._context = f"SecurityAccess {level + 1:#04x} sendKey"
        session.send_key(level + 1, key)
        self._step.detail = f"level {level:#04x} unlocked"

    def _routine(self, step: RoutineStep, session: UdsSession) -> None:
        self._context = f"routine {step.routine_id:04X}"
        memory = self.ecu.memory
        if step.routine == "erase":
            alfid = bytes([(memory.length_bytes << 4) | memory.address_bytes])
            ranges = self._erase_ranges(step.scope)
            for start, size in ranges:
                option = alfid + start.to_bytes(memory.address_bytes, "big") + size.to_bytes(
                    memory.length_bytes, "big")
                self._check_status(step, session.start_routine(step.routine_id, option))
            self._step.detail = ", ".join(f"{start:#010x}+{size:#x}" for start, size in ranges)
            return
        option = self.image.crc32.to_bytes(4, "big") if step.routine == "check_memory" else b""
        self._check_status(step, session.start_routine(step.routine_id, option))
        if step.routine == "check_memory":
            self._step.detail = f"CRC-32 {self.image.crc32:08x} over {self.image.size} bytes matches"

    def _erase_ranges(self, scope: str) -> list[tuple[int, int]]:
        if scope == "segments":
            return [(s.address, len(s.data)) for s, _ in self.mapped]
        regions: list[MemoryRegion] = []
        for _, region in self.mapped:
            if region not in regions:
                regions.append(region)
        return [(r.start, r.size) for r in regions]

    def _check_status(self, step: RoutineStep, record: bytes) -> None:
        name = _ROUTINE_NAMES[step.routine]
        if not record:
            if step.routine in ("check_memory", "check_dependencies"):
                raise ProtocolError(f"{name}: the ECU answered without a routine status")
            return
        if record[0] == 0x00:
            return
        why = {
            "check_memory": f"CRC-32 {self.image.crc32:08x} of the {self.image.size} bytes sent does not "
                            "match what the ECU wrote",
            "check_dependencies": "the written software is not consistent (invalid application header "
                                  "or it does not fit)",
            "check_preconditions": "the ECU refuses programming in the vehicle's current state",
        }.get(step.routine, "the ECU reports the routine failed")
        raise _FAILURES[step.failure](f"{name} reported status {record[0]:#04x}: {why}")

    def _download(self, step: DownloadStep, session: UdsSession, result: FlashResult) -> None:
        memory = self.ecu.memory
        started = self._clock()
        counter_of = block_counters()
        frame_limit = int(self.ecu.isotp.params.get("max_frame_size", ISOTP_MAX_FRAME))
        step_bytes = step_blocks = 0
        try:
            for segment in (s for s, _ in self.mapped):
                self._context = f"RequestDownload {segment.address:#010x} +{len(segment.data):#x}"
                max_length = session.request_download(
                    segment.address, len(segment.data), address_bytes=memory.address_bytes,
                    length_bytes=memory.length_bytes, data_format=memory.data_format)
                block = self._block_size(max_length, step, frame_limit)
                blocks = (len(segment.data) + block - 1) // block
                for n in range(blocks):
                    counter = counter_of(n)
                    offset = n * block
                    self._context = (f"TransferData block {n + 1}/{blocks} counter {counter:#04x} "
                                     f"at {segment.address + offset:#010x}")
                    chunk = segment.data[offset:offset + block]
                    session.transfer_data(counter, chunk)
                    step_bytes += len(chunk)
                    step_blocks += 1
                    result.bytes_transferred += len(chunk)
                    result.blocks += 1
                    self._emit(step.name, "bytes", 0, 0)
                self._context = f"RequestTransferExit for {segment.address:#010x}"
                session.request_transfer_exit()
        finally:
            self._step.bytes = step_bytes
            self._step.blocks = step_blocks
            result.download_time += self._clock() - started
        self._step.detail = f"{len(self.mapped)} segment(s), {step_bytes} bytes in {step_blocks} blocks"

    def _block_size(self, max_length: int, step: DownloadStep, frame_limit: int) -> int:
        """Data bytes per TransferData: maxNumberOfBlockLength counts the SID and the counter too."""
        limit = max_length if step.max_block_length is None else min(max_length, step.max_block_length)
        limit = min(limit, frame_limit)
        if limit < 3:
            raise ProtocolError(f"RequestDownload answered maxNumberOfBlockLength {max_length}: "
                                "too small to carry data")
        return limit - 2

    def _wait_for_reset(self, step: WaitForResetStep, session: UdsSession) -> None:
        self._context = "TesterPresent 0x3E 0x00 until the ECU answers"
        deadline = self._clock() + step.timeout
        attempts = 0
        last: OtaError | None = None
        while True:
            attempts += 1
            try:
                session.tester_present()
                self._step.detail = f"ECU answered after {attempts} attempt(s)"
                return
            except (OtaTimeoutError, NegativeResponseError) as e:
                last = e
            if self._clock() >= deadline:
                raise OtaTimeoutError(f"the ECU did not come back within {step.timeout:g} s after the "
                                      f"reset (last: {last})")
            self._sleep(step.poll_interval)


def _action(step: Step) -> str:
    return {
        SessionStep: "session", TesterPresentStep: "tester_present", SecurityAccessStep: "security_access",
        FingerprintStep: "write_fingerprint", RoutineStep: "routine", DownloadStep: "download",
        DtcSettingStep: "dtc_setting", CommunicationControlStep: "communication_control",
        ResetStep: "reset", WaitForResetStep: "wait_for_reset",
    }.get(type(step), type(step).__name__)


"""Reprogramming: banks, erase, RequestDownload / TransferData / RequestTransferExit, check routines.

What a production bootloader enforces, and what this one does:

* Writes go to one bank: the only one on a single-bank ECU, the inactive one
  on an A/B ECU (the running application is never touched while flashing).
* Flash must be erased before it is programmed; a download range must be
  inside one writable region and erased (else NRC 0x70); programming a cell
  twice is a general programming failure (0x72) that aborts the transfer.
* TransferData: blockSequenceCounter from 1, wrapping 0xFF -> 0x00; the
  previous block repeated (same counter) is acknowledged and not written
  again; any other counter is 0x73; more data than requested is 0x71.
* checkMemory compares the tester's CRC-32 with the CRC-32 over what this
  programming sequence actually wrote, in address order.
* Like a production bootloader's "application valid" mark, a bank is bootable
  only after a checkMemory that matched since it was last erased or written,
  and with an intact application header (a mismatch, a half-written image or
  no check at all leave it invalid).
* A reset boots the pending bank on an A/B ECU; the version read back is the
  one in the application header of the booted image; a single-bank ECU whose
  image is invalid stays in the bootloader, ready to be flashed again.

A programming sequence starts at the first erase or download after a reset,
a session change or a check routine, and collects the written ranges that
checkMemory covers.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import NoReturn

from udsoncan.ResponseCode import ResponseCode as _E

from agent.config.vehicle import EcuConfig
from bench.appimage import AppHeader, parse_header
from bench.ecu.codec import NrcError, split_address_and_length
from bench.ecu.faults import FaultPlan
from bench.ecu.flash import FlashBank, FlashError, RangeSet
from bench.ecu.simconfig import SimConfig
from bench.ecu.store import EcuStore, Persisted

log = logging.getLogger(__name__)

STATUS_OK = 0x00
STATUS_FAILED = 0x01
#: NRCs after which a bootloader abandons the running transfer
ABORTING_NRCS = frozenset({_E.TransferDataSuspended, _E.GeneralProgrammingFailure})


class ResetRequested(Exception):
    """The ECU resets now without answering (fault: reset in the middle of a transfer)."""


@dataclass
class Transfer:
    """A RequestDownload in progress."""

    bank: int
    start: int
    size: int
    received: int = 0
    blocks: int = 0  # blocks accepted (written) in this transfer
    last_counter: int | None = None

    @property
    def expected_counter(self) -> int:
        return 1 if self.last_counter is None else (self.last_counter + 1) & 0xFF


@dataclass
class Sequence:
    """What the current programming sequence wrote, for checkMemory."""

    bank: int
    written: RangeSet
    checked: bool = False  # a check routine ran: the next erase starts a new sequence
    crc_ok: bool = False


class Programming:
    def __init__(self, ecu: EcuConfig, sim: SimConfig, store: EcuStore, persisted: Persisted,
                 faults: FaultPlan) -> None:
        self.ecu = ecu
        self.sim = sim
        self.store = store
        self.persisted = persisted
        self.faults = faults
        self.ab = ecu.banks == "ab"
        self.banks: list[FlashBank] = store.banks
        self.first_region = ecu.memory.regions[0]
        self.transfer: Transfer | None = None
        self.sequence: Sequence | None = None
        self.running: AppHeader | None = None

    # -- banks ----------------------------------------------------------------
    @property
    def active(self) -> int:
        return self.persisted.active_bank

    @property
    def target(self) -> int:
        """The bank a download writes: the inactive one on A/B, the only one otherwise."""
        return 1 - self.active if self.ab else 0

    def header_of(self, bank: int) -> AppHeader | None:
        return parse_header(self.banks[bank].region_bytes(self.first_region))

    def bootable(self, bank: int) -> AppHeader | None:
        """The application a reset would start from ``bank``: checked by checkMemory and intact."""
        return self.header_of(bank) if self.persisted.validated[bank] else None

    def save(self) -> None:
        t = self.transfer
        in_progress = None if t is None else (t.bank, t.start, t.start + t.size)
        self.store.save(self.persisted, in_progress=in_progress)

    def boot(self) -> None:
        """What the bootloader does at power-on / reset: pick the bank, read the application header."""
        p = self.persisted
        if self.ab and p.pending_bank is not None:
            log.info("%s: switching to bank %s", self.ecu.name, "AB"[p.pending_bank])
            p.active_bank, p.pending_bank = p.pending_bank, None
        self.running = self.bootable(p.active_bank)
        if self.running is None and self.ab:
            other = 1 - p.active_bank
            fallback = self.bootable(other)
            if fallback is not None:
                log.warning("%s: bank %s holds no valid application, booting bank %s", self.ecu.name,
                            "AB"[p.active_bank], "AB"[other])
                p.active_bank = other
                self.running = fallback
        if self.running is None:
            log.info("%s: no valid application, staying in the bootloader", self.ecu.name)
        self.transfer = None
        self.sequence = None
        self.save()

    def end_sequence(self) -> None:
        """A session change: the transfer and the programming sequence are over."""
        if self.transfer is not None:
            log.info("%s: transfer abandoned at %d of %d bytes", self.ecu.name, self.transfer.received,
                     self.transfer.size)
            self.transfer = None
            self.save()
        self.sequence = None

    def _sequence_for_write(self) -> Sequence:
        if self.sequence is None or self.sequence.bank != self.target:
            self.sequence = Sequence(bank=self.target, written=RangeSet())
        return self.sequence

    def _touch_target(self) -> None:
        """Changing the target bank invalidates its application and cancels a pending switch to it."""
        self.persisted.validated[self.target] = False
        if self.persisted.pending_bank == self.target:
            log.info("%s: pending switch to bank %s cancelled by a write to it", self.ecu.name,
                     "AB"[self.target])
            self.persisted.pending_bank = None

    # -- erase (routine FF00) ---------------------------------------------------
    def erase(self, record: bytes) -> float:
        """Erase what the option record names; returns how long the erase takes (s)."""
        if self.transfer is not None:
            raise NrcError(_E.RequestSequenceError, "erase while a download is active")
        address, size, used = split_address_and_length(record)
        if used != len(record):
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat, "trailing bytes after the size")
        if size == 0 or self.store.layout.region_for(address, size) is None:
            raise NrcError(_E.RequestOutOfRange, f"{address:#x}+{size:#x} is not in a writable region")
        if self.sequence is not None and self.sequence.checked:
            self.sequence = None
        seq = self._sequence_for_write()
        self._touch_target()
        self.banks[self.target].erase(address, size)
        seq.written.remove(address, address + size)
        seq.crc_ok = False
        self.save()
        log.info("%s: erased %#x+%#x in bank %s", self.ecu.name, address, size, "AB"[self.target])
        return self.faults.erase_time(self.sim.erase_time)

    # -- download ---------------------------------------------------------------
    def request_download(self, data: bytes) -> bytes:
        if self.transfer is not None:
            raise NrcError(_E.UploadDownloadNotAccepted, "a download is already active")
        if len(data) < 2:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat, "request too short")
        if data[0] != self.ecu.memory.data_format:
            raise NrcError(_E.RequestOutOfRange,
                           f"dataFormatIdentifier {data[0]:#04x} not supported "
                           f"(expects {self.ecu.memory.data_format:#04x})")
        address, size, used = split_address_and_length(data[1:])
        if 1 + used != len(data):
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat, "trailing bytes after the size")
        bank = self.banks[self.target]
        if size == 0 or self.store.layout.region_for(address, size) is None:
            raise NrcError(_E.UploadDownloadNotAccepted,
                           f"{address:#x}+{size:#x} is not inside one writable region")
        if not bank.is_erased(address, size):
            raise NrcError(_E.UploadDownloadNotAccepted, f"{address:#x}+{size:#x} is not erased")
        self._sequence_for_write()
        self._touch_target()
        self.transfer = Transfer(bank=self.target, start=address, size=size)
        self.save()
        log.info("%s: download %#x+%#x into bank %s", self.ecu.name, address, size, "AB"[self.target])
        return bytes([0x20]) + self.sim.max_block_length.to_bytes(2, "big")

    def transfer_data(self, counter: int, data: bytes, request_length: int) -> None:
        """Write one block; raises NrcError, or ResetRequested for the reset fault."""
        t = self.transfer
        if t is None:
            raise NrcError(_E.RequestSequenceError, "no download active")
        if request_length > self.sim.max_block_length or not data:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat,
                           f"block of {request_length} bytes "
                           f"(maxNumberOfBlockLength {self.sim.max_block_length})")
        if t.last_counter is not None and counter == t.last_counter:
            log.debug("%s: block counter %#04x repeated, acknowledged without writing", self.ecu.name,
                      counter)
            return
        if counter != t.expected_counter:
            raise NrcError(_E.WrongBlockSequenceCounter,
                           f"got {counter:#04x}, expected {t.expected_counter:#04x}")
        block = t.blocks + 1
        if self.faults.reset_at_block(block):
            raise ResetRequested()
        nrc = self.faults.nrc_on_block(block)
        if nrc is not None:
            self._fail(nrc, f"fault injected at block {block}")
        if t.received + len(data) > t.size:
            self._fail(_E.TransferDataSuspended,
                       f"{t.received + len(data)} bytes would exceed the {t.size} requested")
        address = t.start + t.received
        try:
            self.banks[t.bank].program(address, data)
        except FlashError as e:
            self._fail(_E.GeneralProgrammingFailure, str(e))
        seq = self._sequence_for_write()
        seq.written.add(address, address + len(data))
        seq.crc_ok = False
        t.received += len(data)
        t.blocks += 1
        t.last_counter = counter

    def _fail(self, nrc: int, reason: str) -> NoReturn:
        if nrc in ABORTING_NRCS and self.transfer is not None:
            log.warning("%s: transfer aborted: %s", self.ecu.name, reason)
            self.transfer = None
            self.save()
        raise NrcError(nrc, reason)

    def transfer_exit(self) -> None:
        t = self.transfer
        if t is None:
            raise NrcError(_E.RequestSequenceError, "no download active")
        if t.received != t.size:
            raise NrcError(_E.RequestSequenceError, f"{t.size - t.received} of {t.size} bytes missing")
        self.transfer = None
        self.save()
        log.info("%s: download %#x+%#x complete (%d blocks)", self.ecu.name, t.start, t.size, t.blocks)

    # -- check routines ---------------------------------------------------------
    def check_memory(self, record: bytes) -> int:
        if self.transfer is not None:
            raise NrcError(_E.RequestSequenceError, "checkMemory while a download is active")
        if len(record) != 4:
            raise NrcError(_E.IncorrectMessageLengthOrInvalidFormat,
                           "checkMemory expects a 4-byte CRC-32")
        expected = int.from_bytes(record, "big")
        seq = self.sequence
        crc = 0
        if seq is not None:
            bank = self.banks[seq.bank]
            for start, end in seq.written:
                crc = zlib.crc32(bank.read(start, end - start), crc)
            seq.checked = True
        match = crc == expected and not self.faults.switch("wrong_crc")
        if seq is not None:
            seq.crc_ok = match
            if match and self.header_of(seq.bank) is not None:
                self.persisted.validated[seq.bank] = True  # what a bootloader's "valid" mark records
                self.save()
        log.info("%s: checkMemory tester %08x ecu %08x -> %s", self.ecu.name, expected, crc,
                 "match" if match else "MISMATCH")
        return STATUS_OK if match else STATUS_FAILED

    def check_dependencies(self) -> int:
        if self.transfer is not None:
            raise NrcError(_E.RequestSequenceError, "a download is active")
        if self.sequence is not None:
            self.sequence.checked = True
        header = self.header_of(self.target)
        log.info("%s: checkProgrammingDependencies: %s", self.ecu.name,
                 f"application {header.software_version}" if header else "no valid application header")
        return STATUS_OK if header is not None else STATUS_FAILED

    def check_preconditions(self) -> int:
        return STATUS_FAILED if self.faults.switch("preconditions_fail") else STATUS_OK

    # -- A/B --------------------------------------------------------------------
    def activate(self) -> int:
        if not self.ab:
            raise NrcError(_E.RequestOutOfRange, "single-bank ECU: no bank to activate")
        if self.transfer is not None:
            raise NrcError(_E.RequestSequenceError, "a download is active")
        seq = self.sequence
        if seq is None or seq.bank != self.target or not seq.crc_ok:
            raise NrcError(_E.RequestSequenceError, "the inactive bank has not passed checkMemory")
        if self.header_of(self.target) is None:
            return STATUS_FAILED
        self.persisted.pending_bank = self.target
        self.save()
        log.info("%s: bank %s activated for the next reset", self.ecu.name, "AB"[self.target])
        return STATUS_OK

    def revert(self) -> int:
        if not self.ab:
            raise NrcError(_E.RequestOutOfRange, "single-bank ECU: no bank to revert to")
        if self.transfer is not None:
            raise NrcError(_E.RequestSequenceError, "a download is active")
        p = self.persisted
        if p.pending_bank is not None:
            p.pending_bank = None  # not switched yet: staying on the running bank is the rollback
        elif self.bootable(1 - p.active_bank) is not None:
            p.pending_bank = 1 - p.active_bank
        else:
            log.warning("%s: revert refused, bank %s holds no valid application", self.ecu.name,
                        "AB"[1 - p.active_bank])
            return STATUS_FAILED
        self.save()
        log.info("%s: revert: bank %s runs after the next reset", self.ecu.name,
                 "AB"[p.active_bank if p.pending_bank is None else p.pending_bank])
        return STATUS_OK

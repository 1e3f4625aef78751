"""What a flash reports: progress events while it runs, a structured result per ECU at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import NegativeResponseError, OtaError


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened during a flash.

    ``kind`` is ``step_started``, ``step_finished``, ``step_failed``,
    ``step_skipped`` or ``bytes`` (a TransferData block was acknowledged).
    Byte and block counts are for the whole download, across segments.
    """

    ecu: str
    step: str
    kind: str
    index: int
    total_steps: int
    bytes_done: int = 0
    bytes_total: int = 0
    blocks_done: int = 0


@dataclass
class StepResult:
    name: str
    action: str
    status: str = "pending"  # ok | failed | skipped
    detail: str = ""
    started: float = 0.0  # seconds from the start of the flash
    duration: float = 0.0
    bytes: int = 0
    blocks: int = 0
    retries: int = 0
    #: every NRC the ECU answered in this step, with how many times (0x78 included)
    nrcs: dict[int, int] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "action": self.action, "status": self.status, "detail": self.detail,
            "started_s": round(self.started, 4), "duration_s": round(self.duration, 4),
            "bytes": self.bytes, "blocks": self.blocks, "retries": self.retries,
            "nrcs": {f"{code:#04x}": n for code, n in sorted(self.nrcs.items())},
            "error": self.error,
        }


@dataclass
class FlashResult:
    ecu: str
    script: str
    image: str
    image_size: int
    image_crc32: int
    segments: int
    banks: str
    steps: list[StepResult] = field(default_factory=list)
    cleanup: list[StepResult] = field(default_factory=list)
    duration: float = 0.0
    download_time: float = 0.0
    bytes_transferred: int = 0
    blocks: int = 0
    error: OtaError | None = None
    failed_step: str | None = None
    #: version DIDs read back after a successful flash (name -> value)
    versions_after: dict[str, str] = field(default_factory=dict)
    #: an A/B ECU already ran the image's software version: nothing was flashed
    already_active: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return 0 if self.error is None else self.error.exit_code

    @property
    def throughput(self) -> float:
        """Download payload bytes per second over the download step(s)."""
        return self.bytes_transferred / self.download_time if self.download_time > 0 else 0.0

    def nrcs(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for step in (*self.steps, *self.cleanup):
            for code, n in step.nrcs.items():
                total[code] = total.get(code, 0) + n
        return total

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] | None = None
        if self.error is not None:
            error = {"message": str(self.error), "kind": type(self.error).__name__,
                     "exit_code": self.error.exit_code, "step": self.failed_step}
            if isinstance(self.error, NegativeResponseError):
                error.update(service=f"{self.error.service:#04x}", nrc=f"{self.error.nrc:#04x}")
        return {
            "ecu": self.ecu, "ok": self.ok, "script": self.script, "banks": self.banks,
            "image": {"source": self.image, "size": self.image_size, "crc32": f"{self.image_crc32:08x}",
                      "segments": self.segments},
            "duration_s": round(self.duration, 4), "download_s": round(self.download_time, 4),
            "bytes": self.bytes_transferred, "blocks": self.blocks,
            "throughput_bytes_per_s": round(self.throughput, 1),
            "nrcs": {f"{code:#04x}": n for code, n in sorted(self.nrcs().items())},
            "steps": [s.to_dict() for s in self.steps],
            "cleanup": [s.to_dict() for s in self.cleanup],
            "versions_after": self.versions_after,
            "error": error,
            **({"already_active": True} if self.already_active else {}),
        }

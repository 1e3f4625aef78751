"""Where the vehicle state comes from: the seam the preconditions read through.

Issue 6 has one source, :class:`StateFileSource`: a YAML mapping ``signal: value``
written by the bench (or a test), read afresh at every check. A missing file, an
unreadable one or one that is not a mapping gives an *empty* state (every signal
unknown, so every rule fails) and says why in :attr:`VehicleState.problem`; it never
makes the preconditions pass. Issue 7 adds a live source decoded from CAN with
cantools (signal ages, staleness) behind the same :class:`VehicleStateSource`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class VehicleState:
    values: Mapping[str, Any] = field(default_factory=dict)
    #: where the values came from
    source: str = ""
    #: why the state is empty or partial, if it is
    problem: str | None = None


class VehicleStateSource(ABC):
    @abstractmethod
    def snapshot(self) -> VehicleState:
        """The vehicle state now; unknown signals are absent."""


class StateFileSource(VehicleStateSource):
    """A YAML file ``signal: value`` read at each snapshot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def snapshot(self) -> VehicleState:
        where = f"state file {self.path}"
        try:
            text = self.path.read_text()
        except OSError as e:
            return VehicleState({}, where, f"cannot read it ({e.strerror or e}): every signal is unknown")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            return VehicleState({}, where, f"not valid YAML ({e}): every signal is unknown")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return VehicleState({}, where, "not a mapping of signal: value: every signal is unknown")
        return VehicleState({str(k): v for k, v in data.items()}, where)

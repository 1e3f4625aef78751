"""Vehicle hardware and software baselines (FAW paper section 3.2.2).

``xmlfile``: safe parsing and XSD validation; ``loading``: typed models from
the XML; ``model``: the models; ``matching``: the pure matching engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from update_agent.baseline.loading import (
        check_pair,
        load_hardware_baseline,
        load_software_baseline,
        parse_hardware_baseline,
        parse_software_baseline,
    )
    from update_agent.baseline.matching import (
        EcuFinding,
        EcuRow,
        HardwareResult,
        MatchReport,
        SoftwareResult,
        match,
        match_hardware,
        match_software,
    )
    from update_agent.baseline.model import (
        EcuExpectation,
        HardwareBaseline,
        SoftwareBaseline,
        VehicleHardware,
        VehicleVersionEntry,
    )

#: name -> submodule, imported on first use (PEP 562): ``loading`` pulls in lxml (~4 MiB), which
#: importing the package for ``matching`` or ``model`` alone must not
_EXPORTS = {
    **dict.fromkeys(("check_pair", "load_hardware_baseline", "load_software_baseline", "parse_hardware_baseline",
                     "parse_software_baseline"), "loading"),
    **dict.fromkeys(("EcuFinding", "EcuRow", "HardwareResult", "MatchReport", "SoftwareResult", "match",
                     "match_hardware", "match_software"), "matching"),
    **dict.fromkeys(("EcuExpectation", "HardwareBaseline", "SoftwareBaseline", "VehicleHardware",
                     "VehicleVersionEntry"), "model"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "EcuExpectation", "EcuFinding", "EcuRow", "HardwareBaseline", "HardwareResult", "MatchReport",
    "SoftwareBaseline", "SoftwareResult", "VehicleHardware", "VehicleVersionEntry", "check_pair",
    "load_hardware_baseline", "load_software_baseline", "match", "match_hardware", "match_software",
    "parse_hardware_baseline", "parse_software_baseline",
]

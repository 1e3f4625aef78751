"""Vehicle hardware and software baselines (FAW paper section 3.2.2).

``xmlfile``: safe parsing and XSD validation; ``loading``: typed models from
the XML; ``model``: the models; ``matching``: the pure matching engine.
"""

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

__all__ = [
    "EcuExpectation", "EcuFinding", "EcuRow", "HardwareBaseline", "HardwareResult", "MatchReport",
    "SoftwareBaseline", "SoftwareResult", "VehicleHardware", "VehicleVersionEntry", "check_pair",
    "load_hardware_baseline", "load_software_baseline", "match", "match_hardware", "match_software",
    "parse_hardware_baseline", "parse_software_baseline",
]

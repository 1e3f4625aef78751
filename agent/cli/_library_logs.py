"""Keep udsoncan's and can-isotp's own log lines out of a clean CLI run.

udsoncan logs every negative response and timeout at WARNING/ERROR under
``UdsClient[<ecu>]`` / ``Connection[<ecu>]`` before raising; the CLI reports
the same failure once, named with ECU and step. With ``-v`` / ``--debug`` the
library lines are shown again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable


def quiet_uds_libraries(ecus: Iterable[str], *, verbose: bool) -> None:
    if verbose:
        return
    names = ["isotp", "UdsClient", "Connection"]
    for ecu in ecus:
        names += [f"UdsClient[{ecu}]", f"Connection[{ecu}]"]
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL)

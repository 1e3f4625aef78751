"""``otactl bench ...``: the virtual bench (simulated ECUs, bench bus, and what others add).

The subcommands are not listed here. Every sub-package of :mod:`bench` may
hold a ``cli`` module with ``register(subparsers)`` (adding its parsers and
setting ``func``) and an optional ``ORDER`` int; this command collects them,
so ``bench/ecu/cli.py`` gives ``bench ecus`` and ``bench bus``, and a
``bench/backend/cli.py`` gives ``bench backend`` without touching this file.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from types import ModuleType
from typing import Any

ORDER = 90


def bench_command_modules() -> list[ModuleType]:
    """The ``bench.<package>.cli`` modules, sorted by their ``ORDER``, then name."""
    import bench

    found = []
    for info in pkgutil.iter_modules(bench.__path__):
        if not info.ispkg or info.name.startswith("_"):
            continue
        name = f"bench.{info.name}.cli"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        if hasattr(module, "register"):
            found.append((getattr(module, "ORDER", 100), name, module))
    return [module for _, _, module in sorted(found, key=lambda t: (t[0], t[1]))]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="run the virtual bench: simulated ECUs, bench bus, ...",
                                   description="Run parts of the virtual bench in the foreground.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND")
    sub.required = True
    for module in bench_command_modules():
        module.register(sub)

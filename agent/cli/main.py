"""``otactl`` entry point.

Each subcommand lives in its own module of :mod:`agent.cli` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit code; an optional module
constant ``ORDER`` (int) places it in ``--help``. Modules are found by
scanning the package, so adding a command never edits this file. Errors of the stack end in a one-line
``error: ...`` and the branch's exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import OtaError


def _command_modules() -> list[str]:
    """Every module of this package that defines ``register``, sorted by its ``ORDER``."""
    import pkgutil

    import agent.cli

    found = []
    for info in pkgutil.iter_modules(agent.cli.__path__):
        if info.name == "main" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"agent.cli.{info.name}")
        if hasattr(module, "register"):
            found.append((getattr(module, "ORDER", 100), info.name))
    return [f"agent.cli.{name}" for _, name in sorted(found)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otactl", description="Drive the in-vehicle OTA agent stack.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks on error")
    parser.add_argument("-v", "--verbose", action="store_true", help="info logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _command_modules():
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
        return code
    except OtaError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

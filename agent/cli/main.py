"""``otactl`` entry point.

Each subcommand lives in its own module of :mod:`agent.cli` exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning the exit code; an optional module
constant ``ORDER`` (int) places it in ``--help``. Modules are found by
scanning the package, so adding a command never edits this file. A command's module is named
as the command: when the command line names one, only that module is imported (some pull in
the whole bench, which would cost every ``otactl status`` seconds); ``--help`` imports them all.
Errors of the stack end in a one-line ``error: ...`` and the branch's exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from agent import __version__
from agent.errors import OtaError

#: options of ``otactl`` itself (before the command) that take no value
_GLOBAL_FLAGS = ("--debug", "-v", "--verbose")


def _command_modules(argv: Sequence[str] | None = None) -> list[str]:
    """The modules of this package that define ``register``, sorted by ``ORDER``: only the
    command's own when ``argv`` names one, else all."""
    import pkgutil

    import agent.cli

    names = [info.name for info in pkgutil.iter_modules(agent.cli.__path__)
             if info.name != "main" and not info.name.startswith("_")]
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a not in _GLOBAL_FLAGS]
    if args and args[0] in names:
        names = [args[0]]
    found = []
    for name in names:
        module = importlib.import_module(f"agent.cli.{name}")
        if hasattr(module, "register"):
            found.append((getattr(module, "ORDER", 100), name))
    return [f"agent.cli.{name}" for _, name in sorted(found)]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otactl", description="Drive the in-vehicle OTA agent stack.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks on error")
    parser.add_argument("-v", "--verbose", action="store_true", help="info logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _command_modules(argv):
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(argv)
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

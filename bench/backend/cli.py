"""``otactl bench backend --config FILE`` (and ``python -m bench.backend --config FILE``).

Runs the bench backend in the foreground; prints ``bench backend admin: http://...``
(when the admin port is configured) and then ``bench backend ready: https://127.0.0.1:<port>``
once both listen; SIGINT / SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.backend.config import load_backend_config


def run(args: argparse.Namespace) -> int:
    from bench.backend.server import serve

    cfg = load_backend_config(args.config)
    asyncio.run(serve(cfg, announce=partial(print, flush=True)))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="backend config (YAML)")
    parser.set_defaults(func=run)


def register(bench_subparsers: Any) -> None:
    """Add ``backend`` to the ``otactl bench`` subcommands."""
    parser = bench_subparsers.add_parser("backend", help="run the bench HTTPS backend (mutual TLS) in the foreground",
                                         description=__doc__.split("\n\n")[0])
    add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    from agent.errors import OtaError

    parser = argparse.ArgumentParser(prog="python -m bench.backend", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except OtaError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

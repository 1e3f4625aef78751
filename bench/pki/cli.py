"""``otactl bench pki DIR [--vin VIN]``: write a fresh bench PKI and print its paths as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.pki import BENCH_VIN, generate

ORDER = 60


def run(args: argparse.Namespace) -> int:
    print(json.dumps(generate(args.directory, vin=args.vin).to_json(), indent=2))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, help="where to write the keys and certificates")
    parser.add_argument("--vin", default=BENCH_VIN, help=f"client certificate CN (default {BENCH_VIN})")
    parser.set_defaults(func=run)


def register(bench_subparsers: Any) -> None:
    parser = bench_subparsers.add_parser("pki", help="generate a bench PKI (OEM root CA, backend and vehicle certs)",
                                         description=__doc__)
    add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pki", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""``otactl release``: build releases into the Image repository, rotate its keys.

``otactl release build RELEASE.yaml --out DIR [--json]`` turns a release file (ECU
images, versions, hardware ids, release counters, flash scripts, deltas, encryption,
baseline XML; see :mod:`bench.repository.release_spec`) into signed Image repository
metadata and targets in DIR (created with fresh keys when new) and a release manifest
for the Director.

``otactl release rotate --repo DIR --role ROLE [--keys N] [--threshold M]`` gives ROLE
new keys: a new root version signed by the old and the new root keys.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ORDER = 60


def _build(args: argparse.Namespace) -> int:
    from bench.repository.builder import build_release

    result = build_release(args.release_file, args.out)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    rel = result.release
    what = f"(configuration only) applies to {rel.target_vehicle_version}" if rel.configuration_only \
        else f"-> {rel.target_vehicle_version}"
    print(f"release {rel.release} {what}: Image repository {result.repository} (targets v{result.targets_version})")
    for img in rel.images:
        extra = []
        if img.deltas:
            extra.append("deltas from " + ", ".join(d.base_version for d in img.deltas))
        if img.ciphertext:
            extra.append("encrypted")
        more = f" ({'; '.join(extra)})" if extra else ""
        print(f"  {img.ecu:<12} {img.target}  hw {img.hardware_id}  counter {img.release_counter}{more}")
    print(f"  baseline     {rel.baseline.target}")
    if rel.config is not None:
        print(f"  config       {rel.config.target}  " + ", ".join(f"{k}={v}" for k, v in rel.config_values.items()))
    print(f"trust anchor to provision: {result.repository / 'metadata' / 'root.json'}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from securesystemslib.signer import CryptoSigner

    from bench.repository.image import ImageRepository

    repo = ImageRepository(args.repo)
    signers = [CryptoSigner.generate_ed25519() for _ in range(args.keys)]
    repo.repo.rotate(args.role, signers, args.threshold)
    print(f"{args.role}: {args.keys} new key(s), threshold {args.threshold}; root is now version "
          f"{repo.repo.root.signed.version}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("release", help="build releases into the Image repository",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="release_command", metavar="RELEASE_COMMAND")
    sub.required = True
    build = sub.add_parser("build", help="build RELEASE.yaml into signed Image repository metadata and targets")
    build.add_argument("release_file", type=Path, metavar="RELEASE.yaml")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="Image repository directory")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=_build)
    rotate = sub.add_parser("rotate", help="give a role new keys (new root version signed by old and new keys)")
    rotate.add_argument("--repo", type=Path, required=True, metavar="DIR")
    rotate.add_argument("--role", choices=("root", "targets", "snapshot", "timestamp"), required=True)
    rotate.add_argument("--keys", type=int, default=1, help="number of new keys (default 1)")
    rotate.add_argument("--threshold", type=int, default=1, help="signatures required (default 1)")
    rotate.set_defaults(func=_rotate)

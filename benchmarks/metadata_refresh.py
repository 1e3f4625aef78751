"""Time and bytes of a vehicle's metadata refresh (Director + Image), with 100 and 1,000 targets.

For each size N, in a temporary directory: an Image repository with N ECU image targets
(python-tuf metadata API, keys generated here), a Director repository assigning all N
to one vehicle, the bench backend app serving both over HTTPS with mutual TLS (bench
PKI generated here, loopback), and on the vehicle side dmclient's python-tuf updaters
over the mutual-TLS fetcher. Measured, each as the median of several runs:

* cold: first refresh into empty metadata directories (root, timestamp, snapshot and
  targets of both repositories are downloaded and verified);
* warm: a refresh when nothing changed (only the two timestamps travel; snapshot and
  targets are loaded from disk and verified again);
* changed: the Image repository published a new targets version (one more target) and
  the Director a new timestamp.

Bytes are body bytes received by the fetcher (TLS and HTTP headers excluded). The time
includes HTTPS round trips on loopback, signature checks and JSON parsing. Prints
figures and exits 0: ``python benchmarks/metadata_refresh.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import tempfile
import threading
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from bench.backend.config import load_backend_config
from bench.backend.server import start_backend
from bench.pki import generate
from bench.repository.director import Director
from bench.repository.image import ImageRepository
from dmclient.fetcher import RequestsFetcher
from dmclient.tls import TlsFiles, build_session
from dmclient.uptane import custom
from dmclient.uptane.fetcher import TufFetcher
from dmclient.uptane.repository import RepositoryClient
from dmclient.uptane.signing import public_pem

VIN = "BENCHVIN000000001"


def build(root: Path, n: int, pki: Any) -> None:
    image = ImageRepository.create(root / "image-repo")
    targets: dict[str, TargetFile] = {}
    for i in range(n):
        name = f"ecu{i:04d}/ecu{i:04d}-1.0.{i}.hex"
        data = hashlib.sha256(name.encode()).digest() * 8
        targets[name] = image.prepare_target(name, data, custom.ImageEcuImage(f"HW-{i:04d}", 1, f"1.0.{i}",
                                                                              "bench").to_dict())
    image.publish(targets)
    (root / "route.yaml").write_text("format: 1\nedges: []\n")
    signer = CryptoSigner.generate_ed25519()
    (root / "vehicle.pub.pem").write_bytes(public_pem(signer))
    (root / "vehicles.yaml").write_text(yaml.safe_dump({"vehicles": {VIN: {
        "primary_id": "tbox-0001", "manifest_key": "vehicle.pub.pem", "ecus": {"ecu0000": {"hardware_id": "HW-0"}}}}}))
    director = Director.open_or_create(root / "director", image_dir=root / "image-repo",
                                       route_file=root / "route.yaml", registry_file=root / "vehicles.yaml")
    assigned = {}
    for name, info in targets.items():
        i = int(name[3:7])
        c = custom.DirectorEcuImage(f"ecu{i:04d}", f"HW-{i:04d}", 1, f"1.0.{i}", "bench", "BV OS D 1.0.1",
                                    "single_bank").to_dict()
        assigned[name] = TargetFile(info.length, dict(info.hashes), name, {"custom": c})
    director.vehicle_repo(VIN).publish(assigned)
    (root / "files").mkdir()
    (root / "backend.yaml").write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": 0}, "files": "files",
        "tls": {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key), "client_ca_file": str(pki.ca_cert)},
        "repositories": {"image": "image-repo", "director": "director", "route": "route.yaml",
                         "vehicles": "vehicles.yaml"}}))


class Backend:
    def __init__(self, config: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(start_backend(load_backend_config(config)), self.loop)
        self.running = fut.result(timeout=60)
        self.url: str = self.running.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.close(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)


def refresh(root: Path, url: str, meta: Path, fetcher: TufFetcher) -> tuple[float, int]:
    before = fetcher.bytes_received
    now = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    director = RepositoryClient("director", metadata_dir=meta / "director", metadata_url=f"{url}/director/{VIN}",
                                targets_url=f"{url}/image/targets",
                                trusted_root=(root / "director" / "roots" / "1.root.json").read_bytes(),
                                fetcher=fetcher, reference_time=now)
    director.refresh()
    image = RepositoryClient("image", metadata_dir=meta / "image", metadata_url=f"{url}/image/metadata",
                             targets_url=f"{url}/image/targets",
                             trusted_root=(root / "image-repo" / "metadata" / "1.root.json").read_bytes(),
                             fetcher=fetcher, reference_time=now)
    image.refresh()
    elapsed = time.perf_counter() - t0
    assert len(director.top_level_targets()) >= 1
    return elapsed, fetcher.bytes_received - before


def measure(n: int, runs: int, pki: Any, tmp: Path) -> dict[str, tuple[float, int]]:
    root = tmp / f"n{n}"
    build(root, n, pki)
    backend = Backend(root / "backend.yaml")
    https = RequestsFetcher(build_session(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key), pool_size=2),
                            connect_timeout=10, read_timeout=30)
    fetcher = TufFetcher(https)
    out: dict[str, tuple[float, int]] = {}
    try:
        cold, warm, changed = [], [], []
        for run in range(runs):
            meta = tmp / f"meta-{n}-{run}"
            cold.append(refresh(root, backend.url, meta, fetcher))
            warm.append(refresh(root, backend.url, meta, fetcher))
            image = ImageRepository(root / "image-repo")
            extra = f"extra/extra-{run}.bin"
            image.publish({extra: image.prepare_target(extra, extra.encode(), custom.ImageBaseline("x").to_dict())})
            Director(root / "director", image_dir=root / "image-repo", route_file=root / "route.yaml",
                     registry_file=root / "vehicles.yaml").vehicle_repo(VIN).refresh_timestamp()
            changed.append(refresh(root, backend.url, meta, fetcher))
            shutil.rmtree(meta)
        for label, samples in (("cold", cold), ("warm", warm), ("changed", changed)):
            out[label] = (statistics.median(s[0] for s in samples), int(statistics.median(s[1] for s in samples)))
    finally:
        https.session.close()
        backend.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = generate(tmp / "pki")
        print(f"metadata refresh, Director + Image repository, HTTPS + mutual TLS on loopback, "
              f"median of {args.runs} runs")
        print(f"{'targets':>8} {'case':>8} {'time ms':>9} {'bytes':>10}")
        results = {}
        for n in args.sizes:
            results[n] = measure(n, args.runs, pki, tmp)
            for label, (seconds, nbytes) in results[n].items():
                print(f"{n:>8} {label:>8} {seconds * 1000:>9.1f} {nbytes:>10}")
        for n, r in results.items():
            print(f"refresh_{n}_cold_ms={r['cold'][0] * 1000:.1f} refresh_{n}_cold_bytes={r['cold'][1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

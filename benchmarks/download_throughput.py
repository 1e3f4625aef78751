"""Download throughput of ota-dmclient against curl, and bsdiff4 reconstruction cost.

Everything runs here on loopback, as real processes:

* a fresh bench PKI, the bench backend (``python -m bench.backend``: aiohttp, HTTPS,
  client certificates required) serving a 1 GiB file from a temp directory;
* ``curl`` (with the vehicle's client certificate) piped into ``sha256sum``, and
  ``ota-dmclient`` (``python -m dmclient.daemon``, a fresh process with an empty cache for
  each run) downloading the same file through IPC: resumable ``.part`` with fsynced
  checkpoints, SHA-256 inline, length cap, atomic move into the cache. Runs alternate
  (curl, dmclient, curl, dmclient...) and the best of each is compared; the figures
  include dmclient writing and fsyncing the file, which the curl pipe does not do;
* the same with 4 targets at once (``--concurrent-mib`` each; 4 curl pipes in parallel);
* the daemon's peak RSS (``VmHWM`` of the process) for both;
* bsdiff4: a 64 MiB synthetic firmware image and a patch to a changed version;
  ``bsdiff4.patch`` alone on buffers vs dmclient's :func:`dmclient.delta.apply_delta`
  (read, base hash check, patch, result hash check, write + fsync), each in its own
  process so its peak RSS can be read too.

Prints figures and exits 0; the last line is ``download_1g_ratio_to_curl=<x.xx>``
(dmclient throughput / curl throughput; goal >= 0.8). ``curl`` comes from the Debian
package ``curl``; without it the comparison is skipped with the reason printed.

Also printed: CPU seconds per GiB of each side (the dmclient process; curl + sha256sum),
a figure that does not depend on what else the machine is doing, unlike wall time.

Run: ``python benchmarks/download_throughput.py [--size-mib 1024] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.ipc.sync import SyncClient  # noqa: E402
from bench.pki import BenchPki, generate  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30


def log(msg: str) -> None:
    print(msg, flush=True)


class Lines:
    def __init__(self, stream: Any) -> None:
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []

        def pump() -> None:
            for line in stream:
                self.q.put(line.rstrip("\n"))
            self.q.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise RuntimeError(f"process ended before printing {text!r}: " + "\n".join(self.seen[-20:]))
            self.seen.append(line)
            if text in line:
                return line


def write_file(path: Path, size: int, seed: int) -> str:
    """A file of ``size`` bytes from a random 16 MiB block varied per block; its SHA-256."""
    rnd = random.Random(seed)
    block = bytearray(rnd.randbytes(16 * MiB))
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left, i = size, 0
        while left:
            block[:8] = i.to_bytes(8, "little")
            chunk = bytes(block[:min(left, len(block))])
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


class Backend:
    def __init__(self, root: Path, pki: BenchPki) -> None:
        self.files = root / "files"
        self.files.mkdir()
        cfg = root / "backend.yaml"
        cfg.write_text(f"listen: {{host: 127.0.0.1, port: 0}}\nfiles: {self.files}\n"
                       f"tls: {{cert_file: {pki.server_cert}, key_file: {pki.server_key}, "
                       f"client_ca_file: {pki.ca_cert}}}\n")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.backend", "--config", str(cfg)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        self.url = Lines(self.proc.stdout).wait("bench backend ready: ").split(": ", 1)[1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


class Dmclient:
    """A fresh ota-dmclient with an empty cache and state."""

    def __init__(self, root: Path, pki: BenchPki, backend: Backend, concurrency: int) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="dmbench-", dir=root))
        self.runtime = Path(tempfile.mkdtemp(prefix="dmb-", dir="/tmp"))
        cfg = self.home / "agent.yaml"
        cfg.write_text(f"""\
runtime: {{dir: {self.runtime}}}
dmclient:
  log_level: info
  backend: {{url: "{backend.url}/files/", ca_file: {pki.ca_cert}, cert_file: {pki.client_cert},
             key_file: {pki.client_key}}}
  downloads: {{concurrency: {concurrency}, min_free_bytes: 0, progress_interval: 1.0}}
  cache: {{dir: {self.home / "cache"}, budget: 64GiB}}
  state_db: {self.home / "dmclient.db"}
""")
        env = {**os.environ, "OTA_RUNTIME_DIR": str(self.runtime)}
        self.proc = subprocess.Popen([sys.executable, "-m", "dmclient.daemon", "--config", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        Lines(self.proc.stderr).wait("dmclient: ready")  # keeps draining stderr afterwards
        self.client = SyncClient.for_daemon("dmclient", runtime_dir=self.runtime, call_timeout=600)
        self.client.connect()

    def download(self, targets: list[dict[str, Any]]) -> float:
        """Seconds from the order to the last target verified in the cache (CPU in ``self.cpu``)."""
        with self.client.subscribe("dmclient.download.state") as sub:
            c0 = cpu_seconds(self.proc.pid)
            t0 = time.perf_counter()
            ids = {t["id"] for t in self.client.call("dmclient.download.start", {"targets": targets})["targets"]}
            while ids:
                ev = sub.get(timeout=1200)
                t = ev.params["target"]
                if t["id"] in ids and t["state"] in ("done", "failed", "cancelled"):
                    if t["state"] != "done":
                        raise RuntimeError(f"{t['name']}: {t['state']}: {t['error']}")
                    ids.discard(t["id"])
            elapsed = time.perf_counter() - t0
            self.cpu = cpu_seconds(self.proc.pid) - c0
            return elapsed

    def close(self) -> int:
        peak = vm_hwm(self.proc.pid)
        self.client.close()
        self.proc.terminate()
        self.proc.wait(60)
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.runtime, ignore_errors=True)
        return peak


def curl_pipes(urls: list[str], pki: BenchPki) -> tuple[float, float]:
    """Seconds for ``curl | sha256sum`` of every URL in parallel, and the CPU seconds they used."""
    cmd = (f"curl -sS --fail --cacert {pki.ca_cert} --cert {pki.client_cert} --key {pki.client_key} "
           "{url} | sha256sum")
    c0 = children_cpu()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(["bash", "-o", "pipefail", "-c", cmd.format(url=u)], stdout=subprocess.PIPE, text=True)
             for u in urls]
    for p in procs:
        p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"curl pipe failed: {p.returncode}")
    return time.perf_counter() - t0, children_cpu() - c0


def throughput(args: argparse.Namespace, root: Path, pki: BenchPki) -> float | None:
    backend = Backend(root, pki)
    try:
        size = args.size_mib * MiB
        big = backend.files / "big.bin"
        big_sha = write_file(big, size, 1)
        target = {"url": "big.bin", "length": size, "hashes": {"sha256": big_sha}}
        small = [(f"c{i}.bin", args.concurrent_mib * MiB) for i in range(4)]
        conc_targets = [{"url": n, "length": s, "hashes": {"sha256": write_file(backend.files / n, s, 10 + i)}}
                        for i, (n, s) in enumerate(small)]
        have_curl = shutil.which("curl") is not None and shutil.which("sha256sum") is not None
        if not have_curl:
            log("curl or sha256sum not found: skipping the comparison (install Debian's 'curl' and 'coreutils')")
        log(f"== 1 target of {args.size_mib} MiB over loopback HTTPS, mutual TLS, SHA-256 inline ==")
        curl_best = dm_best = float("inf")
        peaks = []
        for r in range(args.rounds):
            if have_curl:
                t, cpu = curl_pipes([f"{backend.url}/files/big.bin"], pki)
                curl_best = min(curl_best, t)
                log(f"  round {r + 1}: curl | sha256sum  {t:6.2f} s  {size / MiB / t:7.1f} MiB/s  "
                    f"CPU {cpu / (size / GiB):.2f} s/GiB")
            dm = Dmclient(root, pki, backend, concurrency=1)
            t = dm.download([target])
            cpu = dm.cpu
            peaks.append(dm.close())
            dm_best = min(dm_best, t)
            log(f"  round {r + 1}: ota-dmclient      {t:6.2f} s  {size / MiB / t:7.1f} MiB/s  "
                f"CPU {cpu / (size / GiB):.2f} s/GiB  (peak RSS {peaks[-1] / MiB:.1f} MiB)")
        log(f"best: dmclient {size / MiB / dm_best:.1f} MiB/s"
            + (f", curl {size / MiB / curl_best:.1f} MiB/s" if have_curl else "")
            + f"; dmclient peak RSS {max(peaks) / MiB:.1f} MiB")

        total = sum(s for _, s in small)
        log(f"== 4 concurrent targets of {args.concurrent_mib} MiB ==")
        c_curl = c_dm = float("inf")
        c_peaks = []
        for r in range(args.rounds):
            if have_curl:
                t, cpu = curl_pipes([f"{backend.url}/files/{n}" for n, _ in small], pki)
                c_curl = min(c_curl, t)
                log(f"  round {r + 1}: 4 x curl | sha256sum  {t:6.2f} s  {total / MiB / t:7.1f} MiB/s  "
                    f"CPU {cpu / (total / GiB):.2f} s/GiB")
            dm = Dmclient(root, pki, backend, concurrency=4)
            t = dm.download(conc_targets)
            cpu = dm.cpu
            c_peaks.append(dm.close())
            c_dm = min(c_dm, t)
            log(f"  round {r + 1}: ota-dmclient (4)      {t:6.2f} s  {total / MiB / t:7.1f} MiB/s  "
                f"CPU {cpu / (total / GiB):.2f} s/GiB  (peak RSS {c_peaks[-1] / MiB:.1f} MiB)")
        if have_curl:
            log(f"4 concurrent: ratio to curl {c_curl / c_dm:.2f}; dmclient peak RSS {max(c_peaks) / MiB:.1f} MiB")
        else:
            log(f"4 concurrent: dmclient peak RSS {max(c_peaks) / MiB:.1f} MiB")
        return curl_best / dm_best if have_curl else None
    finally:
        backend.stop()


_DELTA_CHILD = r"""
import json, sys, time
from pathlib import Path
mode, base, patch, out, hashes = sys.argv[1:6]
h = json.loads(hashes)
if mode == "bsdiff4":
    import bsdiff4
    src, p = Path(base).read_bytes(), Path(patch).read_bytes()
    t0 = time.perf_counter()
    result = bsdiff4.patch(src, p)
    dt = time.perf_counter() - t0
else:
    from dmclient.delta import apply_delta
    from dmclient.digests import Hashes
    t0 = time.perf_counter()
    apply_delta(Path(base), Path(patch), Path(out), base_hashes=Hashes(**h["base"]),
                target_hashes=Hashes(**h["target"]), target_length=h["length"], max_bytes=1 << 30, what="bench")
    dt = time.perf_counter() - t0
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve from the (large) parent
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": dt, "peak_rss": hwm}))
"""


def delta(args: argparse.Namespace, root: Path) -> None:
    import bsdiff4

    size = args.delta_mib * MiB
    log(f"== bsdiff4 reconstruction of a {args.delta_mib} MiB image ==")
    rnd = random.Random(7)
    # synthetic firmware: code-like (low-entropy, repeating) and data-like (random) regions
    base = bytearray()
    while len(base) < size:
        base += rnd.randbytes(64 * 1024) if rnd.random() < 0.3 else bytes(rnd.choices(range(16), k=64 * 1024))
    base = base[:size]
    new = bytearray(base)
    for _ in range(200):  # scattered changes, like a rebuilt calibration / code change
        at = rnd.randrange(0, size - 4096)
        new[at:at + 256] = rnd.randbytes(256)
    new[size // 2:size // 2] = rnd.randbytes(MiB)  # an inserted MiB shifts everything after it
    base_p, new_p, patch_p = root / "base.img", root / "new.img", root / "patch.bsdiff"
    base_p.write_bytes(base)
    new_p.write_bytes(new)
    t0 = time.perf_counter()
    patch_p.write_bytes(bsdiff4.diff(bytes(base), bytes(new)))
    log(f"  patch made in {time.perf_counter() - t0:.1f} s: {patch_p.stat().st_size / MiB:.2f} MiB "
        f"(image {len(new) / MiB:.1f} MiB)")
    hashes = json.dumps({
        "base": {"sha256": hashlib.sha256(base).hexdigest(), "sha512": hashlib.sha512(base).hexdigest()},
        "target": {"sha256": hashlib.sha256(new).hexdigest(), "sha512": hashlib.sha512(new).hexdigest()},
        "length": len(new)})
    results = {}
    for mode in ("bsdiff4", "dmclient"):
        r = subprocess.run([sys.executable, "-c", _DELTA_CHILD, mode, str(base_p), str(patch_p), str(root / "out.img"),
                            hashes], capture_output=True, text=True, cwd=REPO, check=True)
        results[mode] = json.loads(r.stdout)
    assert (root / "out.img").read_bytes() == new
    b, d = results["bsdiff4"], results["dmclient"]
    log(f"  bsdiff4.patch (buffers in memory)           {b['seconds']:6.2f} s  peak RSS {b['peak_rss'] / MiB:6.1f} MiB")
    log(f"  dmclient apply_delta (read, hash x2, write) {d['seconds']:6.2f} s  peak RSS {d['peak_rss'] / MiB:6.1f} MiB")
    log(f"  dmclient / bsdiff4 time: {d['seconds'] / b['seconds']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--concurrent-mib", type=int, default=256, help="size of each of the 4 concurrent targets")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delta-mib", type=int, default=64)
    parser.add_argument("--skip-delta", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlbench-") as tmp:
        root = Path(tmp)
        pki = generate(root / "pki")
        ratio = throughput(args, root, pki)
        if not args.skip_delta:
            delta(args, root)
    print(f"download_1g_ratio_to_curl={ratio:.2f}" if ratio is not None else "download_1g_ratio_to_curl=n/a")
    return 0


if __name__ == "__main__":
    sys.exit(main())

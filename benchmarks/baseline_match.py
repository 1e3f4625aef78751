"""Baseline matching time for 1,000 vehicle versions x 100 ECUs.

Builds a software baseline XML of that size (and a hardware baseline of the
same 100 ECUs) in a temporary directory, loads it as the update agent does
(safe parse + XSD validation + typed model), then times the matching engine:

* best case: the collected versions match the highest sequence (one entry);
* worst case: no match, and every entry differs from the car only in its
  *last* ECU, so every entry is compared in full before it is rejected;
* no match, the first ECU differs everywhere (what an unknown version on a
  single ECU usually costs).

Prints figures and exits 0; run ``python benchmarks/baseline_match.py``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from update_agent.baseline import load_hardware_baseline, load_software_baseline, match
from update_agent.version_reading import VersionReading

HW_NS = "urn:ota-agent-stack:hardware-baseline:1"
SW_NS = "urn:ota-agent-stack:software-baseline:1"


def ecu_name(j: int) -> str:
    return f"ecu{j:03d}"


def software_version(sequence: int, j: int, ecus: int) -> str:
    # every ECU but the last keeps its version; the last changes with every node
    return f"1.{sequence}.0" if j == ecus - 1 else f"1.0.{j}"


def write_files(directory: Path, versions: int, ecus: int) -> tuple[Path, Path]:
    hw = [f'<hardwareBaseline xmlns="{HW_NS}" format="1" vehicleModel="BM">',
          '<vehicleHardware version="BM-HW-A">']
    hw += [f'<ecu id="{ecu_name(j)}" name="ECU {j}"><hardwareVersion>H1.0</hardwareVersion></ecu>'
           for j in range(ecus)]
    hw += ["</vehicleHardware>", "</hardwareBaseline>"]
    sw = [f'<softwareBaseline xmlns="{SW_NS}" format="1" vehicleModel="BM" platform="OS">']
    for seq in range(1, versions + 1):
        sw.append(f'<vehicleVersion sequence="{seq}" version="BM OS P 1.{seq}.0">')
        sw += [f'<ecu id="{ecu_name(j)}" name="ECU {j}"><softwareVersion>{software_version(seq, j, ecus)}'
               "</softwareVersion></ecu>" for j in range(ecus)]
        sw.append("</vehicleVersion>")
    sw.append("</softwareBaseline>")
    hw_path, sw_path = directory / "hw.xml", directory / "sw.xml"
    hw_path.write_text("\n".join(hw), encoding="utf-8")
    sw_path.write_text("\n".join(sw), encoding="utf-8")
    return hw_path, sw_path


def readings(versions: dict[str, str]) -> dict[str, VersionReading]:
    now = time.time()
    return {e: VersionReading(e, "uds", now, True, hardware_version="H1.0", software_version=v)
            for e, v in versions.items()}


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return min(samples), statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--ecus", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    n, m = args.versions, args.ecus
    with tempfile.TemporaryDirectory() as tmp:
        hw_path, sw_path = write_files(Path(tmp), n, m)
        size = sw_path.stat().st_size
        t0 = time.perf_counter()
        hardware = load_hardware_baseline(hw_path)
        software = load_software_baseline(sw_path)
        load_s = time.perf_counter() - t0
    top = {ecu_name(j): software_version(n, j, m) for j in range(m)}
    worst = {**top, ecu_name(m - 1): "9.9.9"}
    first_differs = {**top, ecu_name(0): "9.9.9"}
    cases = [("best case: top match", top), ("worst case: no match, last ECU differs", worst),
             ("no match, first ECU differs", first_differs)]
    print(f"baseline: {n} vehicle versions x {m} ECUs ({size / 1e6:.1f} MB XML)")
    print(f"load (safe parse + XSD + model), both files: {load_s * 1000:.0f} ms")
    for label, versions in cases:
        collected = readings(versions)
        report = match(hardware, software, collected)
        best, median = timed(lambda c=collected: match(hardware, software, c), args.repeat)  # type: ignore[misc]
        outcome = (f"matched {report.vehicle_version}" if report.ok else
                   f"no match, nearest sequence {report.software.nearest.sequence if report.software.nearest else '-'}"
                   f", {len(report.software.findings)} ECU(s) differ")
        print(f"{label:<40} min {best * 1000:8.3f} ms  median {median * 1000:8.3f} ms  "
              f"({report.software.compared} entries compared; {outcome})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Remote configuration on the bench: 1,000 changes across the bench ECUs, success rate and time per change.

The FAW paper reports a configuration success rate for its remote configuration
(section 3.4); the goal here is 100 %. The simulated ECUs run in their own
``otactl bench ecus`` process on the bench hub; this process is the tester, with
the same code as ``otactl config set`` (:mod:`update_agent.remote_config`): per
change the version gate (F189 of every ECU concerned), the previous values,
the write - diagnostic: DiagnosticSessionControl extended, SecurityAccess
seed/key, WriteDataByIdentifier, back to default, one ECU at a time; broadcast:
one ``OTA_CONFIG_BROADCAST`` frame encoded from the DBC - and the read-back of
every ECU concerned. Items: ``drive_mode`` (engine), ``speed_limit`` (engine and
body, diagnostic), ``comfort_lights`` (brake and body) and ``hill_hold_level``
(brake, broadcast), round robin, each time to a value other than the current one.

Prints figures and exits 0; never fails on time. Last line:
``remote_config_success_rate=<percent>``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.config.vehicle import load_vehicle_config  # noqa: E402
from bench.readyproc import ReadyProcess  # noqa: E402
from update_agent.remote_config.access import VehicleAccess  # noqa: E402
from update_agent.remote_config.change import apply_change, plan_change  # noqa: E402
from update_agent.remote_config.items import load_items  # noqa: E402

CONFIGS = REPO / "configs"
ITEMS = ("drive_mode", "speed_limit", "comfort_lights", "hill_hold_level")
VALUES = {"drive_mode": ["eco", "normal", "sport"], "speed_limit": ["60", "90", "120", "250"],
          "comfort_lights": ["on", "off"], "hill_hold_level": ["0", "1", "2", "3"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1000, help="changes to apply (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="remote-config-") as tmp:
        root = Path(tmp)
        data = yaml.safe_load((CONFIGS / "bench-vehicle.yaml").read_text())
        data["version_frames"]["dbc"] = str(CONFIGS / data["version_frames"]["dbc"])
        vehicle_path = root / "vehicle.yaml"
        vehicle_path.write_text(yaml.safe_dump(data, sort_keys=False))
        (root / "hub").mkdir()
        os.environ["OTA_BENCH_HUB_DIR"] = str(root / "hub")
        bench = ReadyProcess("bench", [sys.executable, "-m", "agent.cli.main", "bench", "ecus", "--config",
                                       str(vehicle_path), "--state-dir", str(root / "state")],
                             prefix="bench ready:", log=root / "bench.log")
        bench.start(60)
        try:
            vehicle = load_vehicle_config(vehicle_path)
            catalog = load_items(CONFIGS / "bench-config-items.yaml", vehicle)
            current = {"drive_mode": "normal", "speed_limit": "250", "comfort_lights": "off", "hill_hold_level": "1"}
            times: dict[str, list[float]] = {"diagnostic": [], "broadcast": []}
            ok: dict[str, int] = {"diagnostic": 0, "broadcast": 0}
            failures: list[str] = []
            with VehicleAccess(vehicle, catalog) as access:
                for n in range(args.changes):
                    name = ITEMS[n % len(ITEMS)]
                    value = rng.choice([v for v in VALUES[name] if v != current[name]])
                    method = catalog.item(name).method
                    t0 = time.perf_counter()
                    try:
                        result = apply_change(access, plan_change(catalog, [(name, value)]))
                        applied, why = result.ok, result.reason
                    except Exception as e:  # a benchmark counts failures, it does not stop
                        applied, why = False, f"{type(e).__name__}: {e}"
                    times[method].append(time.perf_counter() - t0)
                    if applied:
                        ok[method] += 1
                        current[name] = value
                    else:
                        failures.append(f"#{n} {name}={value}: {why}")
        finally:
            bench.stop()
    total = sum(len(t) for t in times.values())
    print(f"remote configuration: {total} changes across engine, brake, body (bench hub, ECUs in their own process)")
    print(f"{'method':<11} {'changes':>7} {'confirmed':>9} {'success %':>9} {'mean ms':>8} {'median ms':>9} "
          f"{'p95 ms':>7} {'max ms':>7}")
    for method, samples in times.items():
        if not samples:
            continue
        ms = sorted(1000 * s for s in samples)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        print(f"{method:<11} {len(ms):>7} {ok[method]:>9} {100 * ok[method] / len(ms):>9.1f} "
              f"{statistics.fmean(ms):>8.1f} {statistics.median(ms):>9.1f} {p95:>7.1f} {ms[-1]:>7.1f}")
    for line in failures[:10]:
        print(f"  failed: {line}")
    print("per change: version gate + previous values + write + read-back of every ECU concerned")
    print(f"remote_config_success_rate={100 * sum(ok.values()) / max(1, total):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

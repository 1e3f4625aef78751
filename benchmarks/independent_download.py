"""Independent download: the Linux ECU's own download against the gateway downloading the same file.

Everything runs here on loopback, as real processes (:mod:`bench.scenario` with
``linux_ecu=True``): the bench backend (HTTPS, client certificates required), the gateway's
``ota-dmclient`` and the bench Linux ECU (its own ``ota-dmclient`` and ``ota-ecu-agent``,
:mod:`bench.linux_ecu`). The Linux ECU's package of ``--size`` bytes is published in release
``bv-1.1.0`` as a ``linux-image`` target. Then, in the same run:

* the gateway's dmclient checks for updates (Uptane full verification): the assignment names
  the package as an independent download, with the Director targets.json it verified;
* **independent**: a SOME/IP client (as the update agent's download job) sends the Linux ECU
  the download order; the ECU verifies the Director metadata itself (partial verification),
  its dmclient downloads, hash-checks and caches the package; timed from the order to the
  ``downloaded`` status notification;
* **gateway**: the gateway's dmclient downloads the same target (``dmclient.download.start``,
  same url, length, hashes) into its own cache; timed from the order to ``done``.

Each figure includes the order, TLS, hashing, fsynced checkpoints and the move into the cache;
both dmclients download with the same settings (the gateway's bench ``downloads`` section).
The independent download runs first, so the backend's page cache is warm for the gateway.

Prints both throughputs and the ratio and exits 0; the last line is
``independent_download_ratio=<x.xx>`` (Linux ECU throughput / gateway throughput).

Run: ``python benchmarks/independent_download.py [--size 64MiB]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agent.ipc.sync import SyncClient  # noqa: E402
from agent.runtime.supervisor import Supervisor, select_daemons  # noqa: E402
from bench.independent import GATEWAY_ADDRESS, INSTANCE, LINUX_ECU  # noqa: E402
from bench.scenario import V1, Scenario, ScenarioOptions  # noqa: E402

TIMEOUT = 600.0
_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def parse_size(text: str) -> int:
    """``64MiB``, ``1GiB``, ``4096``: bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*", text)
    size = int(m.group(1)) * _UNITS[m.group(2) or ""] if m is not None else 0
    if size < 256:
        raise SystemExit(f"--size: expected at least 256 bytes, as bytes or like 64MiB, got {text!r}")
    return size


async def independent(scenario: Scenario, ecu: dict[str, Any], targets: bytes) -> float:
    """Order the Linux ECU's download over SOME/IP; seconds until it reports the package downloaded."""
    from update_agent.linux_ecu.client import DownloadOrder, LinuxEcuClient, wait_for_state

    assert scenario.linux is not None
    client = LinuxEcuClient(instance=INSTANCE, address=GATEWAY_ADDRESS, client_id=0x0399,
                            sd=scenario.linux.sd_config(GATEWAY_ADDRESS))
    await client.start(timeout=30.0)
    try:
        order = DownloadOrder(campaign_id="bench-independent", ecu=LINUX_ECU, target=ecu["target"], url=ecu["url"],
                              length=ecu["length"], hashes=ecu["hashes"], software_version=ecu["software_version"],
                              director_targets=targets)
        start = time.perf_counter()
        status = await client.order_download(order, timeout=30.0)
        if status.state != "downloaded":
            status = await wait_for_state(client, order.campaign_id, {"downloaded", "failed", "cancelled"},
                                          timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
        if status.state != "downloaded":
            raise SystemExit(f"the Linux ECU's download ended {status.state}: {status.error}")
        return elapsed
    finally:
        await client.close()


def gateway(dm: SyncClient, ecu: dict[str, Any]) -> float:
    """The same target through the gateway's dmclient; seconds until it is done."""
    target = {"name": "bench-gateway-copy", "length": ecu["length"], "hashes": ecu["hashes"], "url": ecu["url"]}
    with dm.subscribe("dmclient.download.state") as events:
        start = time.perf_counter()
        tid = dm.call("dmclient.download.start", {"targets": [target]})["targets"][0]["id"]
        while True:
            state = dm.call("dmclient.download.status", {"ids": [tid]})["targets"][0]
            if state["state"] in ("done", "failed", "cancelled"):
                break
            events.get(timeout=TIMEOUT)
        elapsed = time.perf_counter() - start
    if state["state"] != "done":
        raise SystemExit(f"the gateway's download ended {state['state']}: {state['error']}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="64MiB", help="bytes of the package (e.g. 64MiB, 1GiB; default 64MiB)")
    args = ap.parse_args(argv)
    size = parse_size(args.size)
    # the bench's Linux ECU downloads with the gateway's dmclient settings (its stack config): like for like
    with Scenario(ScenarioOptions(linux_ecu=True, linux_image_size=size, log_level="warning")) as scenario:
        sup = Supervisor(scenario.stack_config, env=scenario.env, ready_timeout=60, grace=10,
                         daemons=select_daemons("dmclient"))
        sup.up()
        try:
            with SyncClient.for_daemon("dmclient", runtime_dir=scenario.runtime_dir, call_timeout=TIMEOUT) as dm:
                check = dm.call("dmclient.check", {"vehicle_version": V1})
                assignment = check["assignment"]
                ecu = next(e for e in assignment["ecus"] if e["ecu"] == LINUX_ECU)
                targets = Path(assignment["director_targets"]["path"]).read_bytes()
                t_ecu = asyncio.run(independent(scenario, ecu, targets))
                t_gw = gateway(dm, ecu)
        finally:
            sup.down()
    mib = size / (1 << 20)
    ecu_rate, gw_rate = mib / t_ecu, mib / t_gw
    print(f"package: {mib:.1f} MiB, Linux ECU target {ecu['target']}")
    print(f"Linux ECU (independent: order over SOME/IP, partial verification, its own dmclient): "
          f"{t_ecu:.2f} s, {ecu_rate:.1f} MiB/s")
    print(f"gateway dmclient (the same file into the gateway's cache): {t_gw:.2f} s, {gw_rate:.1f} MiB/s")
    print(f"independent_download_ratio={ecu_rate / gw_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

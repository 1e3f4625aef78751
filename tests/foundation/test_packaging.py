"""The installed package carries its data: flash scripts, configs, the bench interface entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import importlib.resources as r, json, can.interfaces
files = lambda pkg: sorted(p.name for p in r.files(pkg).iterdir() if not p.name.startswith("__"))
print(json.dumps({
    "flash_scripts": files("flash_scripts"),
    "configs": files("configs"),
    "flash_scripts_from": str(r.files("flash_scripts")),
    "benchhub": can.interfaces.BACKENDS.get("benchhub"),
}))
"""


def test_installed_package_finds_its_data(tmp_path: Path) -> None:
    # run outside the source tree, so what is found is what `pip install` put in site-packages
    out = subprocess.run([sys.executable, "-I", "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=60)
    found = json.loads(out.stdout)
    assert {"single_bank.yaml", "ab_bank.yaml"} <= set(found["flash_scripts"])
    assert "bench-vehicle.yaml" in found["configs"]
    assert found["benchhub"] == ["bench.canbus.interface", "BenchHubBus"]


def test_otactl_is_installed_and_reports_errors_cleanly(tmp_path: Path) -> None:
    bad = tmp_path / "vehicle.yaml"
    bad.write_text("buses: [not, a, mapping]\n")
    out = subprocess.run(["otactl", "versions", "--config", str(bad)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: {bad}: buses: expected a mapping")
    assert "Traceback" not in out.stderr

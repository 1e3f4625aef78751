"""Helpers of the remote configuration end-to-end tests: ``otactl config`` as a separate process,
and what a simulated ECU itself says it holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def config_cli(env: dict[str, str], *args: str) -> tuple[int, Any, str]:
    """``otactl config ... --json``: exit code, the JSON printed, stderr."""
    done = subprocess.run([sys.executable, "-m", "agent.cli.main", "config", *args, "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    try:
        data = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError as e:
        raise AssertionError(f"otactl config {args} printed no JSON (exit {done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}") from e
    return done.returncode, data, done.stderr


def ecu_status(state_dir: Path, ecu: str) -> dict[str, Any]:
    """The simulator's own view (``<state dir>/<ecu>/status.json``), independent of the tester."""
    data: dict[str, Any] = json.loads((state_dir / ecu / "status.json").read_text())
    return data

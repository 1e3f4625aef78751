"""``otactl demo`` as a user runs it: the whole stack on a temporary bench, before / after versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def demo(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTA_")}
    env["TMPDIR"] = str(tmp)  # the demo's bench goes there: nothing may be left in it
    return subprocess.run([sys.executable, "-m", "agent.cli.main", "demo", "--image-size", "16384", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def versions(output: str) -> tuple[str, str]:
    before = re.search(r"^vehicle version before: (.+)$", output, re.M)
    after = re.search(r"^vehicle version after: (.+)$", output, re.M)
    assert before and after, output
    return before.group(1).strip(), after.group(1).strip()


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A private, short temporary directory (socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ota-demo-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_walks_the_route_and_cleans_up(tmp: Path) -> None:
    done = demo(tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(done.stdout) == ("BV OS D 1.0.0", "BV OS D 1.2.0")
    # two campaigns along the route, the second on two buses
    summaries = re.findall(r"^campaign \S+: (.+) -> (.+): (\w+)$", done.stdout, re.M)
    assert summaries == [("BV OS D 1.0.0", "BV OS D 1.1.0", "succeeded"),
                         ("BV OS D 1.1.0", "BV OS D 1.2.0", "succeeded")], done.stdout
    assert "temporary files removed" in done.stdout
    assert list(tmp.iterdir()) == []


def test_demo_fail_ecu_rolls_the_car_back(tmp: Path) -> None:
    """The engine fails to flash (every attempt): its campaign rolls back; the car stays on 1.0.0."""
    done = demo(tmp, "--fail-ecu", "engine")
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(done.stdout) == ("BV OS D 1.0.0", "BV OS D 1.0.0")
    assert re.findall(r"^campaign \S+: (.+) -> (.+): (\w+)$", done.stdout, re.M) == \
        [("BV OS D 1.0.0", "BV OS D 1.1.0", "rolled_back")], done.stdout
    assert re.search(r"engine\s+│\s+rolled_back", done.stdout), done.stdout


def test_demo_fail_ab_ecu_rolls_the_car_back_without_a_bank_switch(tmp: Path) -> None:
    """The A/B brake fails to flash (1.1.0 -> 1.2.0) before activating its new bank: its rollback
    finds it still on the old bank, body is reflashed, and the car stays on 1.1.0 (exit 0)."""
    done = demo(tmp, "--fail-ecu", "brake")
    assert done.returncode == 0, done.stdout + done.stderr
    assert versions(done.stdout) == ("BV OS D 1.0.0", "BV OS D 1.1.0")
    assert re.findall(r"^campaign \S+: (.+) -> (.+): (\w+)$", done.stdout, re.M) == \
        [("BV OS D 1.0.0", "BV OS D 1.1.0", "succeeded"),
         ("BV OS D 1.1.0", "BV OS D 1.2.0", "rolled_back")], done.stdout
    assert re.search(r"brake\s+│\s+rolled_back\s+│\s+\d+\s+│\s+rolled back: already on previous bank",
                     done.stdout), done.stdout
    assert "mixed baseline" not in done.stdout
    assert list(tmp.iterdir()) == []

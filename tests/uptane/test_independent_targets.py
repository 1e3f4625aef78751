"""The independent-download target: the release spec's ``linux-image`` and the Director's ``independent``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.errors import ConfigurationError
from bench.repository.release_spec import load_release_spec
from dmclient.uptane import custom

SCRIPT = "- write_slot\n- check\n- set_next\n"


def spec_file(tmp_path: Path, **linux: Any) -> Path:
    (tmp_path / "baseline.xml").write_text("<x/>")
    (tmp_path / "ivi-5.1.0.pkg").write_bytes(b"\x00\x01 any bytes")
    (tmp_path / "ivi-install.yaml").write_text(SCRIPT)
    target = {"type": "linux-image", "ecu": "ivi", "hardware_id": "IVI-9000", "software_version": "5.1.0",
              "release_counter": 2, "image": "ivi-5.1.0.pkg", "install_script": "ivi-install.yaml", **linux}
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump({"format": 1, "release": "bv-1.1.0", "target_vehicle_version": "BV OS D 1.1.0",
                                    "baseline": "baseline.xml", "targets": [target]}))
    return path


def test_a_linux_image_carries_its_install_script_and_any_bytes(tmp_path: Path) -> None:
    (t,) = load_release_spec(spec_file(tmp_path)).targets
    assert t.independent and t.install_script == SCRIPT and t.flash_script == "ivi-install"


@pytest.mark.parametrize(("more", "text"), [
    ({"independent": False}, "independent must be true"),
    ({"install_script": "missing.yaml"}, "no such file"),
    ({"flash_script": "x"}, "unknown key"),
])
def test_bad_linux_images_are_refused(tmp_path: Path, more: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigurationError, match=text):
        load_release_spec(spec_file(tmp_path, **more))


def test_the_director_custom_round_trips_and_refuses_what_no_ecu_could_use() -> None:
    good = {"instance": 1, "install_script": SCRIPT}
    assert custom.DirectorIndependent.parse(good, "x").to_dict() == good
    for bad, text in (({"instance": 0, "install_script": SCRIPT}, "instance"),
                      ({"instance": 1, "install_script": " "}, "install_script"),
                      ({"instance": 1}, "install_script: required")):
        with pytest.raises(ValueError, match=text):
            custom.DirectorIndependent.parse(bad, "x")

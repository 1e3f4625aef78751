"""The vehicle config stops with the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.config.vehicle import load_vehicle_config
from agent.errors import ConfigurationError

BENCH = Path(__file__).resolve().parents[2] / "configs" / "bench-vehicle.yaml"


def _with(tmp_path: Path, edit: object) -> Path:
    data = yaml.safe_load(BENCH.read_text())
    if "version_frames" in data:  # keep relative paths pointing at the shipped files
        data["version_frames"]["dbc"] = str(BENCH.parent / data["version_frames"]["dbc"])
    edit(data)  # type: ignore[operator]
    path = tmp_path / "vehicle.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_bench_config_loads() -> None:
    cfg = load_vehicle_config(BENCH)
    assert set(cfg.ecus) == {"engine", "brake", "body"}
    assert cfg.ecus["brake"].banks == "ab"
    assert cfg.bus_of(cfg.ecus["body"]).channel == "body"
    assert cfg.ecus["engine"].version_dids["software_version"] == 0xF189


@pytest.mark.parametrize(
    ("edit", "key", "reason"),
    [
        (lambda d: d["ecus"]["engine"].update(bus="chassis"), "ecus.engine.bus", "unknown bus 'chassis'"),
        (lambda d: d["ecus"]["engine"]["isotp"].update(tx_id=0x800), "ecus.engine.isotp.tx_id",
         "must be in [0x0, 0x7ff], got 0x800"),
        (lambda d: d["ecus"]["engine"]["isotp"].pop("rx_id"), "ecus.engine.isotp.rx_id",
         "normal_11bit addressing needs rx_id"),
        (lambda d: d["ecus"]["engine"]["isotp"].update(addressing="weird"), "ecus.engine.isotp.addressing",
         "must be one of"),
        (lambda d: d["ecus"]["engine"]["isotp"]["params"].update(blocking_send=False),
         "ecus.engine.isotp.params.blocking_send", "always on"),
        (lambda d: d["ecus"]["engine"]["isotp"]["params"].update(stmin=0x80),
         "ecus.engine.isotp.params.stmin", "0xF1..0xF9"),
        (lambda d: d["ecus"]["engine"]["security"].update(level=2), "ecus.engine.security.level", "odd"),
        (lambda d: d["ecus"]["engine"]["security"].update(algorithm="nosuch.module:f"),
         "ecus.engine.security.algorithm", "cannot import module 'nosuch.module'"),
        (lambda d: d["ecus"]["engine"]["security"].update(algorithm="update_agent.seedkey"),
         "ecus.engine.security.algorithm", "expected 'module:function'"),
        (lambda d: d["ecus"]["engine"]["timing"].update(request_timeout=0.01),
         "ecus.engine.timing.request_timeout", "shorter than p2"),
        (lambda d: d["ecus"]["engine"]["memory"].update(regions=[]), "ecus.engine.memory.regions",
         "at least one writable region"),
        (lambda d: d["ecus"]["engine"]["memory"]["regions"].append({"name": "b", "start": 0x10010, "size": 16}),
         "ecus.engine.memory.regions", "overlap"),
        (lambda d: d["ecus"]["engine"].update(flsh_script="x"), "ecus.engine", "unknown key 'flsh_script'"),
        (lambda d: d["ecus"]["brake"]["isotp"].update(tx_id=0x7E0), "ecus.brake.isotp",
         "used by both 'engine' and 'brake'"),
        (lambda d: d["buses"]["body"].update(fd=True), "buses.body.data_bitrate", "CAN FD needs data_bitrate"),
        (lambda d: d["ecus"]["body"]["isotp"]["params"].update(tx_data_length=64),
         "ecus.body.isotp.params.tx_data_length", "needs a CAN FD bus"),
        (lambda d: d["ecus"]["engine"].update(banks=2), "ecus.engine.banks", "expected str"),
    ],
)
def test_bad_config_names_file_key_and_reason(tmp_path: Path, edit: object, key: str, reason: str) -> None:
    path = _with(tmp_path, edit)
    with pytest.raises(ConfigurationError) as info:
        load_vehicle_config(path)
    err = info.value
    assert err.source == str(path)
    assert err.key == key
    assert reason in str(err)
    assert str(path) in str(err) and key in str(err)


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("buses:\n  pt: {interface: benchhub\n")
    with pytest.raises(ConfigurationError, match=r"invalid YAML: line \d+, column \d+"):
        load_vehicle_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_vehicle_config(tmp_path / "absent.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text("buses: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigurationError, match="invalid YAML"):
        load_vehicle_config(path)

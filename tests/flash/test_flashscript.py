"""Flash scripts are data: parsed into typed steps, bad ones refused with file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.errors import ConfigurationError
from update_agent.flashscript import (
    DownloadStep,
    FingerprintStep,
    ResetStep,
    RoutineStep,
    SecurityAccessStep,
    SessionStep,
    WaitForResetStep,
    cached_flash_script,
    load_flash_script,
    script_path,
)
from update_agent.flashscript import (
    TesterPresentStep as KeepAliveStep,
)


def _write(tmp_path: Path, data: object, name: str = "script.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


MINIMAL = {"family": "t", "steps": [{"action": "download"}]}


def test_packaged_scripts_are_found_by_family_name() -> None:
    single = load_flash_script("single_bank")
    ab = load_flash_script("ab_bank")
    assert single.banks == ("single",) and ab.banks == ("ab",)
    assert script_path("single_bank").parent.name == "flash_scripts"
    names = [s.name for s in ab.steps]
    # the order a bootloader needs: extended -> programming -> unlock -> erase -> write -> check -> activate
    assert names.index("extended_session") < names.index("programming_session") < names.index(
        "security_access") < names.index("erase") < names.index("download") < names.index(
        "check_memory") < names.index("activate") < names.index("reset") < names.index("wait_for_reset")
    assert "activate" not in [s.name for s in single.steps]
    assert [s.name for s in ab.on_failure] == ["tester_present_off", "reset"]


def test_steps_carry_their_parameters(tmp_path: Path) -> None:
    path = _write(tmp_path, {"family": "oem_x", "banks": ["single", "ab"], "steps": [
        {"action": "session", "session": "extended"},
        {"action": "session", "session": 0x60, "name": "supplier_session"},
        {"action": "tester_present", "enabled": True},
        {"action": "security_access", "level": 0x11},
        {"action": "write_fingerprint", "did": 0xF184},
        {"action": "routine", "routine": "erase", "scope": "segments"},
        {"action": "routine", "routine": "check_memory", "id": 0xF001},
        {"action": "download", "max_block_length": 0x402},
        {"action": "routine", "routine": "activate", "only": "ab"},
        {"action": "reset", "type": "soft"},
        {"action": "wait_for_reset", "timeout": 3, "poll_interval": 0.2},
    ]})
    script = load_flash_script(str(path))
    s = script.steps
    assert s[0] == SessionStep(name="extended_session", session=0x03)
    assert s[1] == SessionStep(name="supplier_session", session=0x60)
    assert s[2] == KeepAliveStep(name="tester_present_on", enabled=True)
    assert s[3] == SecurityAccessStep(name="security_access", level=0x11)
    assert s[4] == FingerprintStep(name="write_fingerprint", did=0xF184)
    assert s[5] == RoutineStep(name="erase", routine="erase", routine_id=0xFF00, scope="segments")
    assert s[6] == RoutineStep(name="check_memory", routine="check_memory", routine_id=0xF001)
    assert s[7] == DownloadStep(name="download", max_block_length=0x402)
    assert s[8].only == "ab" and s[8].applies_to("ab") and not s[8].applies_to("single")
    assert s[9] == ResetStep(name="reset", reset_type=0x03)
    assert s[10] == WaitForResetStep(name="wait_for_reset", timeout=3.0, poll_interval=0.2)


def test_a_relative_script_path_is_taken_from_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    _write(tmp_path / "scripts", MINIMAL, "mine.yaml")
    assert load_flash_script("scripts/mine.yaml", base_dir=tmp_path).family == "t"


@pytest.mark.parametrize(("data", "key", "reason"), [
    ({"family": "t", "steps": [{"action": "flash_it"}]}, "steps[0].action", "must be one of"),
    ({"family": "t", "steps": [{"action": "download", "blocksize": 3}]}, "steps[0]", "unknown key 'blocksize'"),
    ({"family": "t", "steps": [{"action": "session", "session": "turbo"}, {"action": "download"}]},
     "steps[0].session", "must be one of default, programming, extended"),
    ({"family": "t", "steps": [{"action": "security_access", "level": 2}, {"action": "download"}]},
     "steps[0].level", "odd"),
    ({"family": "t", "steps": [{"action": "routine", "routine": "format_disk"}, {"action": "download"}]},
     "steps[0].routine", "must be one of erase"),
    ({"family": "t", "steps": [{"action": "download", "only": "abc"}]}, "steps[0].only", "must be one of"),
    ({"family": "t", "steps": [{"action": "reset"}]}, "steps", "no download step"),
    ({"family": "t", "steps": [{"action": "download"}, {"action": "download"}]}, "steps[1]",
     "step name 'download' is used twice"),
    ({"family": "t", "banks": ["c"], "steps": [{"action": "download"}]}, "banks", "expected a list"),
    ({"steps": [{"action": "download"}]}, "family", "required key is missing"),
])
def test_a_bad_script_names_file_key_and_reason(tmp_path: Path, data: object, key: str, reason: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(ConfigurationError) as err:
        load_flash_script(str(path))
    assert err.value.source == str(path)
    assert err.value.key == key
    assert reason in err.value.reason


def test_an_unknown_family_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'no_such_family\.yaml' is not shipped"):
        load_flash_script("no_such_family")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_flash_script(str(tmp_path / "nope.yaml"))


def test_a_script_refuses_an_ecu_of_the_other_bank_layout() -> None:
    with pytest.raises(ConfigurationError, match="'ab_bank' is for ab bank ECUs; engine is single"):
        load_flash_script("ab_bank").check_banks("engine", "single")


def test_a_cached_script_is_read_again_once_its_file_changes(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    first = cached_flash_script(str(path))
    assert cached_flash_script(str(path)) == first and first.family == "t"
    _write(tmp_path, {"family": "edited", "steps": [{"action": "download"}, {"action": "reset"}]})
    again = cached_flash_script(str(path))
    assert again.family == "edited" and [s.name for s in again.steps] == ["download", "reset"]
    path.write_text("steps: [")  # a file broken after a good read is refused, not served from the cache
    with pytest.raises(ConfigurationError, match="invalid YAML"):
        cached_flash_script(str(path))
    path.unlink()
    with pytest.raises(ConfigurationError, match="cannot read"):
        cached_flash_script(str(path))

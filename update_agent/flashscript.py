"""Flash scripts: the YAML sequence a bootloader family expects, as typed steps.

A flash script is data, not code: the steps, their parameters and their
order come from a YAML file in ``flash_scripts/`` (one per bootloader family)
or from a path named in the ECU config. Example::

    family: single_bank
    banks: [single]
    steps:
      - {action: session, session: extended}
      - {action: tester_present, enabled: true}
      - {action: routine, routine: check_preconditions}
      - {action: session, session: programming}
      - {action: security_access}
      - {action: write_fingerprint}
      - {action: routine, routine: erase}
      - {action: download}
      - {action: routine, routine: check_memory}
      - {action: routine, routine: activate, only: ab}
      - {action: reset}
      - {action: wait_for_reset, timeout: 10}
    on_failure:
      - {action: reset}

Every step may carry ``name`` (unique; default: the routine kind, the session
name or the action) and ``only: single|ab`` (run only on ECUs with that bank
layout). ``on_failure`` steps run best effort after a failed step, to leave
the ECU where a real tester would (e.g. reset an A/B ECU back to its intact
active bank). Unknown actions, keys and values are refused with the file and
the key, like any other config.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from agent.config.locate import packaged_file
from agent.config.node import Node, load_yaml
from agent.errors import ConfigurationError

SESSIONS = {"default": 0x01, "programming": 0x02, "extended": 0x03}
RESET_TYPES = {"hard": 0x01, "key_off_on": 0x02, "soft": 0x03}
#: routine kind -> (default routine identifier, what a failed status means)
ROUTINES: dict[str, tuple[int, str]] = {
    "erase": (0xFF00, "protocol"),
    "check_memory": (0x0202, "verification"),
    "check_dependencies": (0xFF01, "verification"),
    "check_preconditions": (0x0203, "vehicle_state"),
    "activate": (0x0210, "protocol"),
    "revert": (0x0211, "protocol"),
}
#: CommunicationControl controlType names (ISO 14229-1 table)
COMM_CONTROLS = {"enable_rx_tx": 0x00, "enable_rx_disable_tx": 0x01, "disable_rx_enable_tx": 0x02,
                 "disable_rx_tx": 0x03}
BANK_LAYOUTS = ("single", "ab")


@dataclass(frozen=True, kw_only=True)
class Step:
    name: str
    only: str | None = None

    def applies_to(self, banks: str) -> bool:
        return self.only is None or self.only == banks


@dataclass(frozen=True, kw_only=True)
class SessionStep(Step):
    session: int


@dataclass(frozen=True, kw_only=True)
class TesterPresentStep(Step):
    enabled: bool


@dataclass(frozen=True, kw_only=True)
class SecurityAccessStep(Step):
    level: int | None = None  # None: the ECU config's security.level


@dataclass(frozen=True, kw_only=True)
class FingerprintStep(Step):
    did: int = 0xF15A


@dataclass(frozen=True, kw_only=True)
class RoutineStep(Step):
    routine: str
    routine_id: int
    #: erase only: "region" erases each memory region the image touches, "segments" each segment's span
    scope: str = "region"

    @property
    def failure(self) -> str:
        return ROUTINES[self.routine][1]


@dataclass(frozen=True, kw_only=True)
class DownloadStep(Step):
    #: cap on maxNumberOfBlockLength (the whole 0x36 request); None: as the ECU says
    max_block_length: int | None = None


@dataclass(frozen=True, kw_only=True)
class DtcSettingStep(Step):
    enabled: bool


@dataclass(frozen=True, kw_only=True)
class CommunicationControlStep(Step):
    control: int
    communication_type: int = 0x01  # normal communication messages


@dataclass(frozen=True, kw_only=True)
class ResetStep(Step):
    reset_type: int = 0x01


@dataclass(frozen=True, kw_only=True)
class WaitForResetStep(Step):
    timeout: float = 10.0
    poll_interval: float = 0.1


@dataclass(frozen=True)
class FlashScript:
    family: str
    source: str
    banks: tuple[str, ...]
    steps: tuple[Step, ...]
    on_failure: tuple[Step, ...] = ()
    description: str = ""

    def check_banks(self, ecu: str, banks: str) -> None:
        if banks not in self.banks:
            raise ConfigurationError(
                f"flash script {self.family!r} is for {'/'.join(self.banks)} bank ECUs; "
                f"{ecu} is {banks}", source=self.source)


def script_path(spec: str, base_dir: Path | None = None) -> Path:
    """A packaged script by family name (``single_bank``), or a file path (relative to ``base_dir``)."""
    if "/" not in spec and not spec.endswith((".yaml", ".yml")):
        return packaged_file("flash_scripts", f"{spec}.yaml")
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


#: path -> ((size, mtime_ns, inode) of the file read, its script); see :func:`cached_flash_script`
_PARSED: dict[str, tuple[tuple[int, int, int], FlashScript]] = {}
_PARSED_LOCK = threading.Lock()


def cached_flash_script(spec: str, base_dir: Path | None = None) -> FlashScript:
    """:func:`load_flash_script`, the file parsed again only when it changed (size, mtime, inode).

    A flash job takes its ECU's script on the job's critical path; the YAML parse (~10 ms) is done
    once per file version instead of once per job. A :class:`FlashScript` is immutable, so jobs share it.
    """
    path = script_path(spec, base_dir)
    try:
        st = path.stat()
    except OSError:  # load_flash_script names the file and the reason
        return load_flash_script(spec, base_dir)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    key = str(path)
    with _PARSED_LOCK:
        hit = _PARSED.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    script = load_flash_script(spec, base_dir)
    with _PARSED_LOCK:
        _PARSED[key] = (stamp, script)
    return script


def load_flash_script(spec: str, base_dir: Path | None = None) -> FlashScript:
    """Load and validate a flash script named by an ECU config's ``flash_script``."""
    root = load_yaml(script_path(spec, base_dir))
    family = root.get("family", str)
    description = root.get("description", str, "")
    banks_raw = root.raw("banks", list(BANK_LAYOUTS))
    if not isinstance(banks_raw, list) or not banks_raw or any(b not in BANK_LAYOUTS for b in banks_raw):
        raise root.error(f"expected a list of {', '.join(BANK_LAYOUTS)}", "banks")
    steps = tuple(root.items("steps", _step))
    on_failure = tuple(root.items("on_failure", _step, []))
    root.done()
    if not steps:
        raise root.error("a flash script needs at least one step", "steps")
    _check_names(root, "steps", steps)
    _check_names(root, "on_failure", on_failure)
    if not any(isinstance(s, DownloadStep) for s in steps):
        raise root.error("no download step: the script would never write the image", "steps")
    return FlashScript(family=family, source=root.source, banks=tuple(banks_raw), steps=steps,
                       on_failure=on_failure, description=description)


def _check_names(root: Node, key: str, steps: tuple[Step, ...]) -> None:
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step.name in seen:
            raise root.error(f"step name {step.name!r} is used twice; give one a 'name'", f"{key}[{i}]")
        seen.add(step.name)


def _session(node: Node, key: str) -> int:
    value = node.raw(key)
    if isinstance(value, str):
        if value not in SESSIONS:
            raise node.error(f"must be one of {', '.join(SESSIONS)} or a number; got {value!r}", key)
        return SESSIONS[value]
    return node.integer(key, minimum=0x01, maximum=0x7F)


def _step(node: Node) -> Step:
    action = node.choice("action", ("session", "tester_present", "security_access", "write_fingerprint",
                                    "routine", "download", "dtc_setting", "communication_control",
                                    "reset", "wait_for_reset"))
    name = node.get("name", str, None)
    only = node.choice("only", BANK_LAYOUTS, None) if node.has("only") else None
    step: Step
    if action == "session":
        session = _session(node, "session")
        label = next((k for k, v in SESSIONS.items() if v == session), f"session_{session:02x}")
        step = SessionStep(name=name or f"{label}_session", only=only, session=session)
    elif action == "tester_present":
        enabled = node.get("enabled", bool)
        step = TesterPresentStep(name=name or f"tester_present_{'on' if enabled else 'off'}", only=only,
                                 enabled=enabled)
    elif action == "security_access":
        level = node.integer("level", None, minimum=1, maximum=0x7D) if node.has("level") else None
        if level is not None and level % 2 == 0:
            raise node.error("requestSeed levels are odd (0x01, 0x03, ...)", "level")
        step = SecurityAccessStep(name=name or "security_access", only=only, level=level)
    elif action == "write_fingerprint":
        step = FingerprintStep(name=name or "write_fingerprint", only=only,
                               did=node.integer("did", 0xF15A, minimum=0, maximum=0xFFFF))
    elif action == "routine":
        kind = node.choice("routine", tuple(ROUTINES))
        routine_id = node.integer("id", ROUTINES[kind][0], minimum=0, maximum=0xFFFF)
        scope = node.choice("scope", ("region", "segments"), "region") if kind == "erase" else "region"
        step = RoutineStep(name=name or kind, only=only, routine=kind, routine_id=routine_id, scope=scope)
    elif action == "download":
        cap = node.integer("max_block_length", None, minimum=3, maximum=0xFFFFFFFF) \
            if node.has("max_block_length") else None
        step = DownloadStep(name=name or "download", only=only, max_block_length=cap)
    elif action == "dtc_setting":
        enabled = node.get("enabled", bool)
        step = DtcSettingStep(name=name or f"dtc_setting_{'on' if enabled else 'off'}", only=only,
                              enabled=enabled)
    elif action == "communication_control":
        control = node.choice("control", tuple(COMM_CONTROLS))
        step = CommunicationControlStep(
            name=name or "communication_control", only=only, control=COMM_CONTROLS[control],
            communication_type=node.integer("communication_type", 0x01, minimum=0, maximum=0xFF))
    elif action == "reset":
        kind = node.choice("type", tuple(RESET_TYPES), "hard")
        step = ResetStep(name=name or "reset", only=only, reset_type=RESET_TYPES[kind])
    else:
        step = WaitForResetStep(
            name=name or "wait_for_reset", only=only,
            timeout=node.number("timeout", 10.0, minimum=0.1, maximum=600),
            poll_interval=node.number("poll_interval", 0.1, minimum=0.01, maximum=10))
    node.done()
    return step

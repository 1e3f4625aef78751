"""``RELEASE.yaml``: what a release is made of, validated before anything is built.

::

    format: 1
    release: bv-1.1.0                       # unique in the Image repository
    target_vehicle_version: BV OS D 1.1.0   # the vehicle version the release moves a car to
    baseline: bench-sw-baseline.xml         # software baseline XML that lists that version
    targets:
      - type: ecu-image                     # an ECU image (or config-change, below)
        ecu: engine                         # ECU name, as in the vehicle config
        hardware_id: ENG-4711
        software_version: 1.1.0             # must be what the baseline lists for this ECU
        release_counter: 2                  # Uptane anti-rollback counter of this image
        image: images/engine-1.1.0.hex      # Intel HEX, Motorola S-record or raw binary
        format: ihex                        # optional: ihex | srec | bin (else from the suffix)
        base_address: 0x10000               # raw binary only
        flash_script: single_bank           # flash_scripts/<name>.yaml on the vehicle
        deltas:                             # optional bsdiff4 patches to this image
          - from_version: 1.0.0             # from this ECU's image of that version in the repository
          - from_version: 0.9.0
            base_image: images/engine-0.9.0.hex   # or from a file (e.g. the factory image)
        encrypt: false                      # AES-256-GCM; the Director wraps the key per vehicle
      - type: linux-image                   # a Linux ECU's package it downloads itself (independent download)
        ecu: ivi
        hardware_id: IVI-9000
        software_version: 5.1.0
        release_counter: 2
        image: images/ivi-5.1.0.pkg         # any bytes: the ECU's install script knows what they are
        install_script: scripts/ivi-install.yaml   # handed to the ECU's agent at install (its stem: the name)
        independent: true                   # the only mode: the gateway never downloads it
        encrypt: false                      # the Director wraps the key to the ECU's own key (vehicles.yaml)
      - type: config-change                 # remote configuration, applied after the images are installed
        values: {drive_mode: sport, launch_control: "on"}   # item -> value (configs/bench-config-items.yaml)
    expiry_days: {targets: 30, snapshot: 7, timestamp: 1}   # optional
    mandatory: true                         # optional: the driver cannot decline it (absent: the vehicle's
                                            # HMI configuration decides; true/false here wins over it)
    deadline: 2026-12-01T00:00:00Z          # optional, mandatory releases only: an absolute ISO 8601 UTC
                                            # time after which the update proceeds at the vehicle's next
                                            # maintenance window without asking

A *configuration-only* release (remote configuration on its own, FAW paper 3.4) has only a
``config-change`` target and says with ``applies_to`` (instead of ``target_vehicle_version``)
the vehicle version whose cars it configures: a configuration change is not software, so the
vehicle version does not change. The baseline must list that version (the Director signs the
baseline with the change, as for any release); a route's ``configurations`` entry assigns the
release to the cars on that version (:mod:`bench.repository.route`)::

    format: 1
    release: bv-1.1.0-sport
    applies_to: BV OS D 1.1.0               # one vehicle version (one release per version)
    baseline: bench-sw-baseline.xml
    targets:
      - type: config-change
        values: {drive_mode: sport, comfort_lights: "on"}

``mandatory`` and ``deadline`` are the release's consent policy: the Director puts them in
the ``custom`` of the baseline target it signs for each vehicle (see
:mod:`dmclient.uptane.custom`), so they reach the HMI agent with the Director's signature.

Relative paths are relative to the release file. ``type`` is the extension point: a new
target kind is a new value with its own fields; unknown types and unknown keys are
refused with file, key and reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent.config.node import Node, load_yaml
from agent.errors import ConfigurationError
from dmclient.uptane import custom
from dmclient.uptane.custom import MAX_COUNTER, check_ident
from update_agent import vehicle_version
from update_agent.images import FORMATS

TARGET_TYPES = ("ecu-image", "config-change", "linux-image")


@dataclass(frozen=True)
class DeltaSpec:
    from_version: str
    base_image: Path | None = None


@dataclass(frozen=True)
class EcuImageSpec:
    ecu: str
    hardware_id: str
    software_version: str
    release_counter: int
    image: Path
    flash_script: str
    format: str | None = None
    base_address: int | None = None
    deltas: tuple[DeltaSpec, ...] = ()
    encrypt: bool = False
    where: str = ""
    #: a ``linux-image``: the install script (text) the gateway hands to the ECU, which downloads the image itself
    install_script: str | None = None

    @property
    def independent(self) -> bool:
        return self.install_script is not None


@dataclass(frozen=True)
class ConfigChangeSpec:
    """A configuration change (item -> value), published as one signed JSON target."""

    values: dict[str, str]
    where: str = ""


@dataclass(frozen=True)
class ReleaseSpec:
    release: str
    #: the version the release leads to; of a configuration-only release, the one it applies to (``applies_to``)
    target_vehicle_version: str
    baseline: Path
    targets: tuple[EcuImageSpec, ...]
    expiry_days: dict[str, float] = field(default_factory=dict)
    source: str = "<memory>"
    config: ConfigChangeSpec | None = None
    #: the release's consent policy (None: the release does not say)
    mandatory: bool | None = None
    #: ISO 8601 UTC (canonical ``YYYY-MM-DDTHH:MM:SSZ``); only with ``mandatory`` true
    deadline: str | None = None

    @property
    def configuration_only(self) -> bool:
        """A configuration change and no ECU image: the vehicle version does not change."""
        return not self.targets and self.config is not None


def _ident(node: Node, key: str) -> str:
    try:
        return check_ident(node.get(key, str), node.key_path(key))
    except ValueError as e:
        raise node.error(str(e).split(": ", 1)[1], key) from e


def _policy(node: Node) -> tuple[bool | None, str | None]:
    """``mandatory`` and ``deadline`` of the release (see the module docstring)."""
    mandatory = node.get("mandatory", bool) if node.has("mandatory") else None
    if not node.has("deadline"):
        return mandatory, None
    try:
        deadline = custom.check_deadline(node.raw("deadline"), node.key_path("deadline"))
    except ValueError as e:
        raise node.error(str(e).split(": ", 1)[1], "deadline") from e
    if mandatory is not True:
        raise node.error("a deadline needs mandatory: true (after it a mandatory update proceeds without asking)",
                         "deadline")
    return mandatory, deadline


def _file(node: Node, key: str, base: Path) -> Path:
    p = Path(node.get(key, str))
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise node.error(f"no such file: {p}", key)
    return p


def _delta(node: Node, base: Path) -> DeltaSpec:
    spec = DeltaSpec(_ident(node, "from_version"), _file(node, "base_image", base) if node.has("base_image") else None)
    node.done()
    return spec


def _config_change(node: Node) -> ConfigChangeSpec:
    values_node = node.child("values")
    values: dict[str, str] = {}
    for key in list(values_node.data):
        raw = values_node.raw(key)
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise values_node.error("expected the value as text (quote on/off, which YAML reads as booleans)", key)
        values[str(key)] = str(raw)
    values_node.done()
    try:
        custom.parse_config_document(custom.config_document(values), node.key_path("values"))
    except ValueError as e:
        raise node.error(str(e).split(": ", 1)[1], "values") from e
    node.done()
    return ConfigChangeSpec(values, node.key_path())


def _target(node: Node, base: Path) -> EcuImageSpec | ConfigChangeSpec:
    kind = node.get("type", str, "ecu-image")
    if kind not in TARGET_TYPES:
        raise node.error(f"unknown target type {kind!r} (supported: {', '.join(TARGET_TYPES)})", "type")
    if kind == "config-change":
        return _config_change(node)
    if kind == "linux-image":
        return _linux_image(node, base)
    fmt = node.choice("format", FORMATS, None) if node.has("format") else None
    spec = EcuImageSpec(
        ecu=_ident(node, "ecu"), hardware_id=_ident(node, "hardware_id"),
        software_version=_ident(node, "software_version"),
        release_counter=node.integer("release_counter", minimum=0, maximum=MAX_COUNTER),
        image=_file(node, "image", base), flash_script=_ident(node, "flash_script"), format=fmt,
        base_address=node.integer("base_address", minimum=0, maximum=(1 << 64) - 1) if node.has("base_address")
        else None,
        deltas=tuple(node.items("deltas", lambda n: _delta(n, base), [])),
        encrypt=node.get("encrypt", bool, False), where=node.key_path())
    if spec.encrypt and spec.deltas:
        raise node.error("an encrypted image cannot have delta patches (a plaintext patch would reveal the image)",
                         "deltas")
    seen = set()
    for d in spec.deltas:
        if d.from_version == spec.software_version:
            raise node.error(f"a delta from {d.from_version} to itself", "deltas")
        if d.from_version in seen:
            raise node.error(f"two deltas from {d.from_version}", "deltas")
        seen.add(d.from_version)
    node.done()
    return spec


def _linux_image(node: Node, base: Path) -> EcuImageSpec:
    if not node.get("independent", bool, True):
        raise node.error("a Linux ECU image is downloaded by the ECU itself: independent must be true", "independent")
    script = _file(node, "install_script", base)
    text = script.read_text()
    if not text.strip() or len(text) > custom.MAX_INSTALL_SCRIPT:
        raise node.error(f"the install script must hold 1..{custom.MAX_INSTALL_SCRIPT} characters", "install_script")
    try:
        name = check_ident(script.stem, node.key_path("install_script"))
    except ValueError as e:
        raise node.error(str(e).split(": ", 1)[1], "install_script") from e
    spec = EcuImageSpec(
        ecu=_ident(node, "ecu"), hardware_id=_ident(node, "hardware_id"),
        software_version=_ident(node, "software_version"),
        release_counter=node.integer("release_counter", minimum=0, maximum=MAX_COUNTER),
        image=_file(node, "image", base), flash_script=name, format="bin", where=node.key_path(),
        install_script=text, encrypt=node.get("encrypt", bool, False))
    node.done()
    return spec


def load_release_spec(path: str | Path) -> ReleaseSpec:
    root = load_yaml(path)
    base = Path(path).resolve().parent
    fmt = root.integer("format", 1)
    if fmt != 1:
        raise root.error(f"only format 1 is understood, got {fmt}", "format")
    parsed = root.items("targets", lambda n: _target(n, base))
    configs = [t for t in parsed if isinstance(t, ConfigChangeSpec)]
    targets = tuple(t for t in parsed if isinstance(t, EcuImageSpec))
    if not targets and not configs:
        raise root.error("a release needs at least one ECU image or a config-change", "targets")
    # a configuration-only release names the version it applies to; a software release the one it leads to
    version_key = "target_vehicle_version" if targets else "applies_to"
    wrong_key = "applies_to" if targets else "target_vehicle_version"
    if root.has(wrong_key):
        raise root.error("a release with ECU images leads to a target_vehicle_version (applies_to is for "
                         "configuration-only releases)" if targets else
                         "a configuration-only release does not change the vehicle version: say which version it "
                         "applies to with applies_to", wrong_key)
    version = root.get(version_key, str)
    canonical = str(vehicle_version.parse(version, source=str(path), key=version_key))
    if len(configs) > 1:
        raise ConfigurationError("a release has at most one config-change target (put every value in it)",
                                 source=str(path), key=configs[1].where)
    ecus: dict[str, str] = {}
    for t in targets:
        if t.ecu in ecus:
            raise ConfigurationError(f"ECU {t.ecu!r} has two images (also {ecus[t.ecu]})", source=str(path),
                                     key=t.where)
        ecus[t.ecu] = t.where
    expiry: dict[str, float] = {}
    if root.has("expiry_days"):
        e = root.child("expiry_days")
        for role in ("targets", "snapshot", "timestamp"):
            if e.has(role):
                expiry[role] = e.number(role, minimum=0.001, maximum=3650)
        e.done()
    mandatory, deadline = _policy(root)
    spec = ReleaseSpec(release=_ident(root, "release"), target_vehicle_version=canonical,
                       baseline=_file(root, "baseline", base), targets=targets, expiry_days=expiry,
                       source=str(path), config=configs[0] if configs else None, mandatory=mandatory,
                       deadline=deadline)
    root.done()
    return spec

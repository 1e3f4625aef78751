"""The bench's Linux ECU for independent download: what :class:`bench.scenario.Scenario` adds with
``ScenarioOptions(linux_ecu=True)``.

One Linux ECU, ``ivi`` (hardware ``IVI-9000``, A/B directory slots), runs its own
``ota-dmclient`` and ``ota-ecu-agent`` (:mod:`bench.linux_ecu`, separate processes on loopback)
and offers the "OTA secondary" SOME/IP service, instance 1, at :data:`ECU_ADDRESS`; the
gateway's update agent reaches it from :data:`GATEWAY_ADDRESS`. Both use the bench's SD port
(:attr:`bench.scenario.Scenario.someip_sd_port`, a free UDP port per bench that the HMI service
uses too), so two benches on one machine never find each other's ECU.

Along the route it runs 5.0.0 (factory, slot a), and release ``bv-1.1.0`` moves it to 5.1.0
together with the engine: a package of ``linux_image_size`` bytes (any bytes: its install
script writes them into the inactive slot) published as a ``linux-image`` target, which the
Director signs with ``independent`` (the instance and the install script). The software
baseline the bench uses then lists ``ivi`` in every vehicle version (:func:`write_baseline`).

With ``linux_encrypt`` the package is published encrypted: the ECU has its own key pair
(generated at run time, :func:`bench.linux_ecu.encryption_key_pair`), registered with the
Director, which wraps the content key to it; the gateway passes that wrapped key in the
download order and the ECU's dmclient fetches the ciphertext and decrypts it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LINUX_ECU = "ivi"
HARDWARE_ID = "IVI-9000"
INSTANCE = 1
GATEWAY_ADDRESS = "127.0.0.21"
ECU_ADDRESS = "127.0.0.32"  # 127.0.0.30/.31: the bench head unit, otactl hmi --someip
SD_GROUP = "224.224.224.246"
#: the ECU's software version per bench vehicle version (the keys of bench.scenario.ECU_VERSIONS)
VERSIONS = {"BV OS D 1.0.0": "5.0.0", "BV OS D 1.1.0": "5.1.0", "BV OS D 1.2.0": "5.1.0"}
COUNTERS = {"5.0.0": 1, "5.1.0": 2}
#: the release that updates it
RELEASE = "bv-1.1.0"
INSTALL_SCRIPT = "# the bench Linux ECU's install script (bench/independent.py)\n- write_slot\n- check\n- set_next\n"
_NS = "urn:ota-agent-stack:software-baseline:1"
#: the keys of the gateway's dmclient section the ECU's own dmclient copies (how it downloads)
GATEWAY_DMCLIENT_KEYS = ("downloads", "retries")


def free_udp_port() -> int:
    """A UDP port free on every address now (bound on all of them at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("", 0))
        port: int = s.getsockname()[1]
        return port


def package_bytes(version: str, size: int) -> bytes:
    """The bench package of ``version``: ``size`` pseudo-random bytes (the same for the same arguments)."""
    return random.Random(f"{LINUX_ECU}-{version}").randbytes(size)


def write_baseline(source: Path, target: Path) -> None:
    """``source`` (a software baseline XML) with the Linux ECU in every vehicle version, into ``target``."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    tree = etree.parse(str(source), parser)
    for entry in tree.getroot().iter(f"{{{_NS}}}vehicleVersion"):
        version = VERSIONS.get(str(entry.get("version")))
        if version is None:
            continue
        ecu = etree.SubElement(entry, f"{{{_NS}}}ecu", id=LINUX_ECU, name="Infotainment (Linux, A/B slots)")
        etree.SubElement(ecu, f"{{{_NS}}}softwareVersion").text = version
    tree.write(str(target), xml_declaration=True, encoding="UTF-8")


class LinuxEcuSetup:
    """Files, release target, registry entry and stack keys of the bench Linux ECU (see the module docstring)."""

    def __init__(self, directory: Path, *, image_size: int, sd_port: int, fail: str = "none",
                 dmclient: Mapping[str, Any] | None = None, encrypt: bool = False) -> None:
        self.dir = directory
        self.image_size = image_size
        self.fail = fail
        self.dmclient = dict(dmclient or {})
        self.sd_port = sd_port
        self.encrypt = encrypt
        self.bench: Any = None

    def package(self, version: str) -> Path:
        path = self.dir / "images" / f"{LINUX_ECU}-{version}.pkg"
        if not path.exists():
            path.write_bytes(package_bytes(version, self.image_size))
        return path

    def release_target(self, version: str) -> dict[str, Any]:
        """The ``linux-image`` target of the release spec (the package and the install script written)."""
        script = self.dir / "scripts" / f"{LINUX_ECU}-install.yaml"
        script.parent.mkdir(exist_ok=True)
        script.write_text(INSTALL_SCRIPT)
        return {"type": "linux-image", "ecu": LINUX_ECU, "hardware_id": HARDWARE_ID, "software_version": version,
                "release_counter": COUNTERS[version], "image": str(self.package(version).relative_to(self.dir)),
                "install_script": str(script.relative_to(self.dir)), "independent": True, "encrypt": self.encrypt}

    @property
    def ecu_dir(self) -> Path:
        return self.dir / "linux-ecu"

    def registry_entry(self) -> dict[str, Any]:
        """Its entry in the Director's vehicle registry: hardware id, SOME/IP instance, its own encryption key
        (generated now, at run time; the ECU's dmclient gets the private half)."""
        from bench.linux_ecu import encryption_key_pair

        _, public = encryption_key_pair(self.ecu_dir / "pki")
        return {"hardware_id": HARDWARE_ID, "someip_instance": INSTANCE, "encryption_key": str(public)}

    def sd(self) -> dict[str, Any]:
        return {"group": SD_GROUP, "port": self.sd_port, "cyclic_offer_delay": 0.5, "ttl": 3}

    def sd_config(self, address: str) -> Any:
        """The bench's SOME/IP-SD settings for the node at ``address`` (an ``agent.someip`` SdConfig)."""
        from agent.someip.discovery import SdConfig
        from agent.someip.sd_timing import SdTiming

        sd = self.sd()
        return SdConfig(local_address=address, group=sd["group"], port=sd["port"],
                        timing=SdTiming(cyclic_offer_delay=sd["cyclic_offer_delay"], ttl=sd["ttl"]))

    def stack_keys(self) -> dict[str, dict[str, Any]]:
        """Per section, the keys the gateway's stack config gets (merged into the rendered file)."""
        return {"update_agent": {"linux_ecus": {LINUX_ECU: {"instance": INSTANCE}},
                                 "someip": {"address": GATEWAY_ADDRESS, "sd": self.sd()},
                                 "linux_timeouts": {"notification": 2.0}},
                "dmclient": {"uptane": {"ecus": {LINUX_ECU: {"hardware_id": HARDWARE_ID, "linux": True}}}}}

    def start(self, *, backend_url: str, pki: Any, director_root: Path, start_version: str, log_level: str,
              ready_timeout: float, gateway_dmclient: Mapping[str, Any] | None = None) -> Any:
        """Build and start the ECU's processes (:class:`bench.linux_ecu.LinuxEcuBench`); the bench object.

        ``gateway_dmclient``: the gateway's ``dmclient`` section (the rendered stack config); the ECU's
        dmclient downloads with the same ``downloads`` and ``retries`` values (a like-for-like bench),
        unless the setup's own ``dmclient`` keys replace them.
        """
        from bench.linux_ecu import LinuxEcuBench

        same = {k: v for k, v in (gateway_dmclient or {}).items() if k in GATEWAY_DMCLIENT_KEYS}

        bench = LinuxEcuBench(self.ecu_dir, LINUX_ECU, backend_url, pki, director_root, address=ECU_ADDRESS,
                              sd=self.sd_config(ECU_ADDRESS), instance_id=INSTANCE,
                              initial_version=VERSIONS[start_version], hardware_id=HARDWARE_ID, fail=self.fail,
                              log_level=log_level, ready_timeout=ready_timeout,
                              dmclient_overrides={**same, **self.dmclient} or None)
        self.bench = bench
        bench.start()
        return bench

    def stop(self) -> None:
        if self.bench is not None:
            self.bench.cleanup()
            self.bench = None

    def factory_record(self, version: str) -> tuple[str, bytes]:
        """(target name, bytes) of the package the ECU runs at start: the gateway's installed-image record."""
        return f"{LINUX_ECU}/{LINUX_ECU}-{version}.pkg", self.package(version).read_bytes()


def merge(doc: dict[str, Any], keys: Mapping[str, Any]) -> None:
    """``keys`` merged into ``doc``, mappings key by key (the rendered stack config)."""
    for key, value in keys.items():
        if isinstance(value, Mapping) and isinstance(doc.get(key), dict):
            merge(doc[key], value)
        else:
            doc[key] = value

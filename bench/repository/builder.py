"""The release builder: a ``RELEASE.yaml`` into signed Image repository targets and a release manifest.

What :func:`build_release` does, refusing bad input before anything is written:

1. load the release spec; parse every image (Intel HEX / S-record / raw binary) with
   ``update_agent.images`` (bincopy underneath), so a malformed file is refused naming
   its line; the image *file* is what is published (the flasher parses it on the car);
2. load the software baseline XML with ``update_agent.baseline`` and check it lists
   the target vehicle version with exactly the software version of every image;
3. refuse a release id already published, an image whose release counter is below
   one already published for the same hardware, and a changed target under an
   existing name;
4. make bsdiff4 patches from the named base versions (a base found among this ECU's
   published images, or a given file), and AES-256-GCM ciphertexts (content key and
   nonce kept in ``content-keys/``; the Director wraps the key to each vehicle);
5. publish: new targets (and the release's configuration change as a small JSON
   target, ``config/<release>.json``), snapshot and timestamp signed with the
   repository's keys, then the release manifest for the Director (with the release's
   ``mandatory`` / ``deadline``, which the Director signs into each vehicle's targets).

A configuration-only release (``applies_to``, no image) publishes its baseline and its
configuration change target only.

The repository is created (fresh keys, root v1 with a 2-of-3 root threshold) when
``DIR`` does not hold one yet; building into an existing one adds the release.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import bsdiff4
from tuf.api.metadata import TargetFile

from agent.errors import ConfigurationError
from bench.repository.image import ImageRepository, sha256_hex
from bench.repository.release_manifest import FileRef, ReleaseDelta, ReleaseImage, ReleaseManifest
from bench.repository.release_spec import EcuImageSpec, ReleaseSpec, load_release_spec
from bench.repository.tufrepo import Clock, Expiry, utc_now
from dmclient.digests import Hashes
from dmclient.encryption import encrypt_file
from dmclient.uptane import custom
from update_agent.baseline import load_software_baseline
from update_agent.images import detect_format, load_image


@dataclass(frozen=True)
class BuildResult:
    release: ReleaseManifest
    repository: Path
    targets_version: int
    new_targets: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"release": self.release.to_json(), "repository": str(self.repository),
                "targets_version": self.targets_version, "new_targets": list(self.new_targets),
                "trusted_root": str(self.repository / "metadata" / "root.json")}


def _suffix(path: Path) -> str:
    return path.suffix.lower() or ".bin"


def _check_baseline(spec: ReleaseSpec) -> None:
    baseline = load_software_baseline(spec.baseline)
    entry = next((e for e in baseline.entries if str(e.version) == spec.target_vehicle_version), None)
    if entry is None:
        listed = ", ".join(str(e.version) for e in baseline.entries)
        raise ConfigurationError(f"the baseline does not list the target vehicle version "
                                 f"{spec.target_vehicle_version!r} (it lists {listed})",
                                 source=str(spec.baseline))
    for t in spec.targets:
        expected = entry.ecus.get(t.ecu)
        if expected is None:
            raise ConfigurationError(f"ECU {t.ecu!r} is not part of {spec.target_vehicle_version!r} in the baseline",
                                     source=spec.source, key=t.where)
        if t.software_version not in expected.versions:
            listed = ", ".join(sorted(expected.versions))
            raise ConfigurationError(f"software version {t.software_version} of ECU {t.ecu} is not what the baseline "
                                     f"lists for {spec.target_vehicle_version!r} ({listed})",
                                     source=spec.source, key=t.where)


def _check_counters(repo: ImageRepository, spec: ReleaseSpec) -> None:
    for t in spec.targets:
        for name, info in repo.targets.items():
            c = info.custom or {}
            if c.get("type") == custom.ECU_IMAGE and c.get("hardware_id") == t.hardware_id \
                    and int(c.get("release_counter", 0)) > t.release_counter:
                raise ConfigurationError(
                    f"release counter {t.release_counter} of {t.ecu} is below {c['release_counter']} of the already "
                    f"published {name} for the same hardware {t.hardware_id}: vehicles that have it would refuse "
                    "this image as a rollback", source=spec.source, key=t.where)


def _base_image(repo: ImageRepository, t: EcuImageSpec, from_version: str, given: Path | None) -> bytes:
    if given is not None:
        load_image(given, base_address=t.base_address if detect_format(given) == "bin" else None)
        return given.read_bytes()
    for release in repo.releases().values():
        img = release.image(t.ecu)
        if img is not None and img.software_version == from_version and img.hardware_id == t.hardware_id:
            return repo.read_target(img.target)
    raise ConfigurationError(f"no published image of ECU {t.ecu} ({t.hardware_id}) with software version "
                             f"{from_version} to make a delta from; give base_image", key=t.where)


def _ref(info: TargetFile) -> FileRef:
    return FileRef(info.path, info.length, Hashes.parse(info.hashes, info.path))


def _image_targets(repo: ImageRepository, spec: ReleaseSpec, t: EcuImageSpec,
                   out: dict[str, TargetFile]) -> ReleaseImage:
    if not t.independent:  # a Linux ECU's package is any bytes; a flash image must parse
        load_image(t.image, fmt=t.format, base_address=t.base_address)  # refuse a malformed image, naming its line
    data = t.image.read_bytes()
    name = f"{t.ecu}/{t.ecu}-{t.software_version}{_suffix(t.image)}"
    ciphertext = None
    if t.encrypt:
        ciphertext = f"{name}.enc"
        key, nonce = os.urandom(32), os.urandom(12)
        with tempfile.TemporaryDirectory() as tmp:
            enc = Path(tmp) / "image.enc"
            encrypt_file(t.image, enc, key, nonce)
            out[ciphertext] = repo.prepare_target(ciphertext, enc.read_bytes(), custom.ImageCiphertext(name).to_dict())
        repo.store_content_key(sha256_hex(data), key, nonce)
    image_custom = custom.ImageEcuImage(t.hardware_id, t.release_counter, t.software_version, spec.release,
                                        ciphertext).to_dict()
    out[name] = repo.prepare_target(name, data, image_custom)
    deltas = []
    for d in t.deltas:
        base = _base_image(repo, t, d.from_version, d.base_image)
        base_hashes = Hashes.parse(TargetFile.from_data("base", base, ["sha256", "sha512"]).hashes, "base")
        patch_name = f"{t.ecu}/{t.ecu}-{d.from_version}-to-{t.software_version}.bsdiff"
        patch = bsdiff4.diff(base, data)
        out[patch_name] = repo.prepare_target(patch_name, patch,
                                              custom.ImageDelta(name, d.from_version, base_hashes).to_dict())
        deltas.append(ReleaseDelta(_ref(out[patch_name]), d.from_version, base_hashes))
    return ReleaseImage(t.ecu, _ref(out[name]), t.hardware_id, t.release_counter, t.software_version,
                        t.flash_script, tuple(deltas), _ref(out[ciphertext]) if ciphertext else None,
                        t.install_script)


def build_release(spec_path: Path, out: Path, *, clock: Clock = utc_now) -> BuildResult:
    spec = load_release_spec(spec_path)
    _check_baseline(spec)
    defaults = Expiry()
    days = spec.expiry_days
    expiry = Expiry(root=defaults.root,
                    targets=timedelta(days=days["targets"]) if "targets" in days else defaults.targets,
                    snapshot=timedelta(days=days["snapshot"]) if "snapshot" in days else defaults.snapshot,
                    timestamp=timedelta(days=days["timestamp"]) if "timestamp" in days else defaults.timestamp)
    repo = ImageRepository.open_or_create(out, expiry=expiry, clock=clock)
    if repo.release(spec.release) is not None:
        raise ConfigurationError(f"release {spec.release!r} is already published in {out}", source=spec.source,
                                 key="release")
    _check_counters(repo, spec)
    new: dict[str, TargetFile] = {}
    images = tuple(_image_targets(repo, spec, t, new) for t in spec.targets)
    baseline_name = f"baselines/{spec.release}.xml"
    new[baseline_name] = repo.prepare_target(baseline_name, spec.baseline.read_bytes(),
                                             custom.ImageBaseline(spec.target_vehicle_version).to_dict())
    config = None
    if spec.config is not None:
        config_name = f"config/{spec.release}.json"
        new[config_name] = repo.prepare_target(config_name, custom.config_document(spec.config.values),
                                               custom.ImageConfig(spec.release).to_dict())
        config = _ref(new[config_name])
    manifest = ReleaseManifest(spec.release, spec.target_vehicle_version, _ref(new[baseline_name]), images, config,
                               spec.mandatory, spec.deadline, dict(spec.config.values) if spec.config else {})
    repo.publish(new, manifest)
    return BuildResult(manifest, out, repo.repo.targets.signed.version, tuple(sorted(new)))

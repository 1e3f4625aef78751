"""Uptane full verification's cross-checks, as a pure function over verified metadata.

By the time :func:`cross_check` runs, python-tuf has verified each repository on its
own (signatures, thresholds, versions, expiry, snapshot consistency). What Uptane adds
for a primary, and this module does (no I/O: target infos and lookups come in):

for every Director target

* its ``custom`` is well formed and of a type this vehicle knows;
* an ECU image names an ECU this vehicle has (vehicle config and Uptane ECU registry),
  and no ECU gets two images;
* the Image repository has a target of the same name, **same length and hashes** (every
  digest the Director gives, SHA-256 always), the same hardware id, release counter,
  software version and release;
* the hardware id is the ECU's registered one;
* the release counter is not lower than the installed image's;
* a delta patch and a ciphertext the Director points to exist in the Image repository
  as such, made from / for exactly this image;
* all targets lead to one target vehicle version, newer than the current one (a
  configuration change with no ECU image: equal to it, a configuration-only release), and the
  baseline XML of that version is a target of both repositories; the Director's
  baseline target carries the release's ``mandatory`` / ``deadline`` (well formed, or
  invalid metadata naming the field), which the bundle returns.

The first failure raises the matching :mod:`dmclient.uptane.errors` class naming the
target, the ECU and both values.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tuf.api.metadata import TargetFile

from agent.errors import VehicleVersionError
from dmclient.digests import Hashes
from dmclient.encryption import TAG_BYTES
from dmclient.uptane import custom
from dmclient.uptane.assignment import (
    DeltaAssignment,
    EcuAssignment,
    EncryptionAssignment,
    IndependentAssignment,
    target_url,
)
from dmclient.uptane.errors import (
    ArbitrarySoftwareError,
    InvalidMetadataError,
    PartialBundleError,
    RollbackError,
    UnknownEcuError,
    WrongHardwareError,
)
from dmclient.uptane.state import InstalledRecord
from update_agent import vehicle_version

T = TypeVar("T")
ImageLookup = Callable[[str], "TargetFile | None"]
InstalledLookup = Callable[[str], "InstalledRecord | None"]


@dataclass(frozen=True)
class VerifiedBundle:
    target_vehicle_version: str
    ecus: tuple[EcuAssignment, ...]
    #: the baseline XML target (the Image repository's info, equal to the Director's)
    baseline: TargetFile
    #: the configuration change target (the Image repository's info), when assigned
    config: TargetFile | None = None
    #: the release's consent policy, from the Director's baseline target (see :mod:`~dmclient.uptane.custom`)
    mandatory: bool | None = None
    deadline: str | None = None


def hashes_of(info: TargetFile, repository: str) -> Hashes:
    try:
        return Hashes.parse(info.hashes, f"{repository} target {info.path}: hashes")
    except ValueError as e:
        raise InvalidMetadataError(str(e), repository=repository) from e


def same_file(director: TargetFile, image: TargetFile, what: str, ecu: str | None = None) -> None:
    """Director and Image agree on length and on every digest the Director gives."""
    if director.length != image.length:
        raise ArbitrarySoftwareError(f"{what}: the Director says {director.length} bytes, the Image repository "
                                     f"{image.length}", ecu=ecu)
    if "sha256" not in director.hashes:
        raise InvalidMetadataError(f"{what}: the Director gives no sha256", repository="director", ecu=ecu)
    for algorithm, digest in sorted(director.hashes.items()):
        other = image.hashes.get(algorithm)
        if other is None or not hmac.compare_digest(str(digest), str(other)):
            raise ArbitrarySoftwareError(f"{what}: {algorithm} differs between Director ({str(digest)[:16]}...) and "
                                         f"Image repository ({str(other)[:16] if other else 'none'}...)", ecu=ecu)


def _parse(parse: Callable[[Any, str], T], data: object, where: str, repository: str,
           ecu: str | None = None) -> T:
    try:
        return parse(data, where)
    except ValueError as e:
        raise InvalidMetadataError(str(e), repository=repository, ecu=ecu) from e


def _image_custom(info: TargetFile, expected: str, parse: Callable[[Any, str], T], what: str,
                  ecu: str | None) -> T:
    """The Image repository's ``custom`` of ``info``, which must be of type ``expected``."""
    where = f"Image repository target {info.path}: custom"
    kind = _parse(lambda d, w: custom.target_type(d, w, custom.IMAGE_TYPES), info.custom, where, "image", ecu)
    if kind != expected:
        raise ArbitrarySoftwareError(f"{what}: the Image repository lists {info.path} as a {kind} target, "
                                     f"not as a {expected} target", ecu=ecu)
    return _parse(parse, info.custom, where, "image", ecu)


def _lookup(image: ImageLookup, name: str, what: str, ecu: str | None) -> TargetFile:
    info = image(name)
    if info is None:
        raise PartialBundleError(f"{what}: {name} is not in the Image repository (partial bundle or a target the "
                                 "Image repository never signed)", ecu=ecu)
    return info


def _check_image(name: str, director: TargetFile, d: custom.DirectorEcuImage, image: ImageLookup,
                 ecus: Mapping[str, str], installed: InstalledLookup, targets_url: str) -> EcuAssignment:
    what = f"target {name} for ECU {d.ecu}"
    registered = ecus.get(d.ecu)
    if registered is None:
        raise UnknownEcuError(f"{what}: this vehicle has no ECU {d.ecu!r} (known: {', '.join(sorted(ecus))})",
                              repository="director", ecu=d.ecu)
    info = _lookup(image, name, what, d.ecu)
    same_file(director, info, what, d.ecu)
    im = _image_custom(info, custom.ECU_IMAGE, custom.ImageEcuImage.parse, what, d.ecu)
    if d.hardware_id != im.hardware_id:
        raise WrongHardwareError(f"{what}: hardware id {d.hardware_id!r} from the Director, {im.hardware_id!r} from "
                                 "the Image repository", ecu=d.ecu)
    if d.hardware_id != registered:
        raise WrongHardwareError(f"{what}: image is for hardware {d.hardware_id!r}, ECU {d.ecu} is {registered!r}",
                                 ecu=d.ecu)
    if d.release_counter != im.release_counter:
        raise ArbitrarySoftwareError(f"{what}: release counter {d.release_counter} from the Director, "
                                     f"{im.release_counter} from the Image repository", ecu=d.ecu)
    if (d.software_version, d.release) != (im.software_version, im.release):
        raise ArbitrarySoftwareError(f"{what}: the Director says software {d.software_version} of release "
                                     f"{d.release}, the Image repository {im.software_version} of {im.release}",
                                     ecu=d.ecu)
    now = installed(d.ecu)
    if now is not None and d.release_counter < now.release_counter:
        raise RollbackError(f"{what}: release counter {d.release_counter} is lower than the installed image's "
                            f"({now.image.name}, counter {now.release_counter})", ecu=d.ecu)
    hashes = hashes_of(info, "image")
    delta = None
    if d.delta is not None:
        patch = _lookup(image, d.delta.target, f"{what}: delta patch", d.ecu)
        pc = _image_custom(patch, custom.DELTA, custom.ImageDelta.parse, f"{what}: delta patch", d.ecu)
        if pc.of != name or not pc.base.matches(d.delta.base) or pc.base.sha256 != d.delta.base.sha256:
            raise ArbitrarySoftwareError(f"{what}: delta patch {d.delta.target} is, per the Image repository, from "
                                         f"{pc.base.sha256[:16]}... to {pc.of}, not from "
                                         f"{d.delta.base.sha256[:16]}... to {name}", ecu=d.ecu)
        ph = hashes_of(patch, "image")
        delta = DeltaAssignment(d.delta.target, target_url(targets_url, d.delta.target, ph), patch.length, ph,
                                d.delta.base)
    encryption = None
    url = target_url(targets_url, name, hashes)
    if d.encryption is not None:
        enc = d.encryption
        cipher = _lookup(image, enc.target, f"{what}: ciphertext", d.ecu)
        cc = _image_custom(cipher, custom.CIPHERTEXT, custom.ImageCiphertext.parse, f"{what}: ciphertext", d.ecu)
        if cc.of != name or im.ciphertext != enc.target:
            raise ArbitrarySoftwareError(f"{what}: ciphertext {enc.target} is not, per the Image repository, the "
                                         f"encrypted form of {name}", ecu=d.ecu)
        ch = hashes_of(cipher, "image")
        if not ch.matches(enc.spec.hashes) or ch.sha256 != enc.spec.hashes.sha256:
            raise ArbitrarySoftwareError(f"{what}: ciphertext digests in the Director's encryption info differ from "
                                         "the Image repository's", ecu=d.ecu)
        if cipher.length != info.length + TAG_BYTES:
            raise ArbitrarySoftwareError(f"{what}: ciphertext is {cipher.length} bytes, expected image length + "
                                         f"{TAG_BYTES} = {info.length + TAG_BYTES}", ecu=d.ecu)
        url = target_url(targets_url, enc.target, ch)
        encryption = EncryptionAssignment(enc.target, url, enc.spec)
    independent = None
    if d.independent is not None:
        if delta is not None:  # encrypted: the ECU decrypts with its own key (the Director wrapped it to that)
            raise InvalidMetadataError(f"{what}: an independent download carries no delta here",
                                       repository="director", ecu=d.ecu)
        independent = IndependentAssignment(d.independent.instance, d.independent.install_script)
    return EcuAssignment(d.ecu, name, url, info.length, hashes, d.release_counter, d.hardware_id,
                         d.software_version, d.release, d.flash_script, delta, encryption, independent)


def _check_vehicle_version(target: str, current: str, *, configuration_only: bool = False) -> None:
    try:
        new = vehicle_version.parse(target, source="director", key="target_vehicle_version")
    except VehicleVersionError as e:
        raise InvalidMetadataError(str(e), repository="director") from e
    old = vehicle_version.parse(current, key="reported vehicle version")
    if not new.same_line(old):
        raise InvalidMetadataError(f"target vehicle version {target!r} is not of the same model and platform as "
                                   f"the vehicle's {current!r}", repository="director")
    if configuration_only:  # a configuration change is not software: it is for the version the vehicle is on
        if new != old:
            raise InvalidMetadataError(f"a configuration change without ECU images is for vehicle version "
                                       f"{target!r}, the vehicle is on {current!r}", repository="director")
        return
    if not old < new:
        raise RollbackError(f"target vehicle version {target!r} is not newer than the vehicle's {current!r}",
                            repository="director")


def cross_check(director_targets: Mapping[str, TargetFile], image: ImageLookup, *, ecus: Mapping[str, str],
                installed: InstalledLookup, current_vehicle_version: str, targets_url: str) -> VerifiedBundle | None:
    """The verified bundle, or None when the Director assigns nothing.

    ``ecus``: this vehicle's ECUs (in the vehicle config) and their registered hardware
    ids; ``installed``: the installed image of an ECU; ``targets_url``: the Image
    repository's targets base URL (download URLs are built from it).
    """
    if not director_targets:
        return None
    images: dict[str, EcuAssignment] = {}
    baselines: list[tuple[str, TargetFile, custom.DirectorBaseline]] = []
    configs: list[tuple[str, TargetFile]] = []
    versions: set[str] = set()
    for name in sorted(director_targets):
        info = director_targets[name]
        where = f"Director target {name}: custom"
        try:
            custom.check_target_name(name, f"Director target {name!r}")
            kind = custom.target_type(info.custom, where, custom.DIRECTOR_TYPES)
        except ValueError as e:
            raise InvalidMetadataError(str(e), repository="director") from e
        if kind == custom.BASELINE:
            b = _parse(custom.DirectorBaseline.parse, info.custom, where, "director")
            baselines.append((name, info, b))
            versions.add(b.target_vehicle_version)
            continue
        if kind == custom.CONFIG:
            c = _parse(custom.DirectorConfig.parse, info.custom, where, "director")
            configs.append((name, info))
            versions.add(c.target_vehicle_version)
            continue
        d = _parse(custom.DirectorEcuImage.parse, info.custom, where, "director")
        if d.ecu in images:
            raise InvalidMetadataError(f"the Director assigns two images to ECU {d.ecu}: {images[d.ecu].target} and "
                                       f"{name}", repository="director", ecu=d.ecu)
        images[d.ecu] = _check_image(name, info, d, image, ecus, installed, targets_url)
        versions.add(d.target_vehicle_version)
    if len(versions) != 1:
        raise InvalidMetadataError(f"Director targets lead to different vehicle versions: {sorted(versions)}",
                                   repository="director")
    (target_version,) = versions
    _check_vehicle_version(target_version, current_vehicle_version, configuration_only=not images and bool(configs))
    if not baselines:
        raise PartialBundleError(f"the Director assigns vehicle version {target_version!r} without its baseline XML "
                                 "target", repository="director")
    if len(baselines) > 1:
        raise InvalidMetadataError(f"the Director lists {len(baselines)} baseline targets", repository="director")
    name, dinfo, policy = baselines[0]
    iinfo = _lookup(image, name, f"baseline {name}", None)
    same_file(dinfo, iinfo, f"baseline {name}")
    ib = _image_custom(iinfo, custom.BASELINE, custom.ImageBaseline.parse, f"baseline {name}", None)
    if ib.vehicle_version != target_version:
        raise ArbitrarySoftwareError(f"baseline {name} is, per the Image repository, the baseline of "
                                     f"{ib.vehicle_version!r}, not of {target_version!r}")
    config = None
    if len(configs) > 1:
        raise InvalidMetadataError(f"the Director lists {len(configs)} configuration targets", repository="director")
    if configs:
        cname, cinfo = configs[0]
        config = _lookup(image, cname, f"configuration {cname}", None)
        same_file(cinfo, config, f"configuration {cname}")
        _image_custom(config, custom.CONFIG, custom.ImageConfig.parse, f"configuration {cname}", None)
        if config.length > custom.MAX_CONFIG_BYTES:
            raise InvalidMetadataError(f"configuration {cname} is {config.length} bytes (at most "
                                       f"{custom.MAX_CONFIG_BYTES})", repository="image")
    return VerifiedBundle(target_version, tuple(images[e] for e in sorted(images)), iinfo, config,
                          policy.mandatory, policy.deadline)

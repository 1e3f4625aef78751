"""A check for updates, as an Uptane primary does it, end to end.

:meth:`UptaneClient.check` (one at a time):

1. reference time from the configured source, never below the last check's;
2. the vehicle version manifest: one report per registered ECU (installed image and
   its release counter from the state database, a fresh report counter, the attack the
   last check detected), signed with the vehicle key and POSTed to the Director;
3. Director metadata refreshed (python-tuf, staged copy of the trusted directory);
4. Image repository metadata refreshed (likewise);
5. the cross-checks of :func:`dmclient.uptane.verification.cross_check`;
6. the baseline XML of the target vehicle version downloaded from the Image repository
   (length-capped and hashed by python-tuf against the info both repositories agree
   on), parsed with ``update_agent.baseline`` and checked to list every assigned
   image's software version for its ECU; then admitted to the package cache (a copy an
   earlier check admitted, with the length and hashes agreed on now, is re-hashed from the
   cache instead of downloaded again: a pending assignment costs no baseline download);
7. commit: the staged metadata becomes the trusted state, attack indicators are
   cleared, the time floor is raised.

Any failure before 7 leaves the trusted metadata, the installed records and the cache
as they were (staged copies are discarded; nothing but the verified baseline ever
enters the cache), and a detected attack is recorded for the next manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import requests
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import TargetFile

from agent.errors import BaselineFileError, ProtocolError, VerificationError
from dmclient.cache import PackageCache
from dmclient.digests import Hashes, StreamHasher, hash_file
from dmclient.errors import HttpStatusError
from dmclient.fetcher import Fetcher, normalise
from dmclient.uptane import custom
from dmclient.uptane.assignment import Assignment, BaselineAssignment, CheckResult, ConfigAssignment
from dmclient.uptane.config import UptaneConfig
from dmclient.uptane.errors import BaselineMismatchError, InvalidMetadataError, UptaneVerificationError
from dmclient.uptane.fetcher import TufFetcher, once_more_if_dropped
from dmclient.uptane.manifest import EcuVersionReport, InstalledImage, VehicleManifest, sign_manifest
from dmclient.uptane.metadata_store import MetadataStore
from dmclient.uptane.repository import RepositoryClient
from dmclient.uptane.signing import load_signer
from dmclient.uptane.state import UptaneState
from dmclient.uptane.timesource import TimeSource, reference_time
from dmclient.uptane.verification import VerifiedBundle, cross_check, hashes_of
from update_agent import vehicle_version
from update_agent.baseline import parse_software_baseline

log = logging.getLogger(__name__)


class ManifestUploader:
    """POSTs the signed manifest over the same ``requests`` session as every download."""

    def __init__(self, session: requests.Session, *, timeout: tuple[float, float]) -> None:
        self.session = session
        self.timeout = timeout

    def upload(self, url: str, body: bytes) -> None:
        with once_more_if_dropped(lambda: self._post(url, body)) as resp:
            if resp.status_code in (200, 201, 204):
                return
            detail = resp.text.strip()[:300]
            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                raise ProtocolError(f"{url}: the Director refused the vehicle manifest: HTTP {resp.status_code} "
                                    f"{detail}")
            raise HttpStatusError(f"{url}: HTTP {resp.status_code} {detail}", status=resp.status_code,
                                  retryable=True)

    def _post(self, url: str, body: bytes) -> requests.Response:
        try:
            return self.session.post(url, data=body, headers={"Content-Type": "application/json"},
                                     timeout=self.timeout)
        except Exception as e:
            raise normalise(e, url) from e


class UptaneClient:
    def __init__(self, cfg: UptaneConfig, *, fetcher: Fetcher, uploader: ManifestUploader, cache: PackageCache,
                 state: UptaneState | None = None, time_source: TimeSource | None = None,
                 signer: CryptoSigner | None = None) -> None:
        self.cfg = cfg
        self.fetcher = TufFetcher(fetcher)
        self.uploader = uploader
        self.cache = cache
        self.state = state or UptaneState(cfg.state_dir / "uptane.db")
        self.time_source = time_source or cfg.time_source
        self.signer = signer or load_signer(cfg.signing_key, source=cfg.source)
        self.director_store = MetadataStore(cfg.state_dir / "director")
        self.image_store = MetadataStore(cfg.state_dir / "image")
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the state database (the fetcher's session belongs to the caller)."""
        self.state.close()

    # -- manifest ---------------------------------------------------------------------------
    def build_manifest(self, current_version: str) -> VehicleManifest:
        counters = self.state.next_report_counters(sorted(self.cfg.ecus))
        reports = []
        for ecu in sorted(self.cfg.ecus):
            rec = self.state.installed(ecu)
            counter, attack = counters[ecu]
            reports.append(EcuVersionReport(ecu, rec.image if rec else None, rec.release_counter if rec else 0,
                                            counter, attack))
        issued = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return VehicleManifest(self.cfg.vin, self.cfg.primary_id, current_version, issued, tuple(reports),
                               self.state.configuration())

    # -- the check ------------------------------------------------------------------------
    def check(self, current_version: str) -> CheckResult:
        """Full verification; the assignment, or ``assignment=None`` for nothing to do."""
        current = str(vehicle_version.parse(current_version, key="vehicle_version"))
        with self._lock:
            when = reference_time(self.time_source, self.state.time_floor())
            manifest = self.build_manifest(current)
            self.uploader.upload(self.cfg.manifest_url, sign_manifest(manifest, self.signer))
            staged_d, staged_i = self.director_store.stage(), self.image_store.stage()
            try:
                result = self._verify(current, when, staged_d, staged_i)
            except UptaneVerificationError as e:
                self._record_attack(e)
                raise
            finally:  # a committed stage became a generation or the next stage (unchanged); any other is discarded
                if staged_d.exists():
                    self.director_store.discard(staged_d)
                if staged_i.exists():
                    self.image_store.discard(staged_i)
            return result

    def _record_attack(self, e: UptaneVerificationError) -> None:
        text = f"{e.attack}: {e}"[:200]
        ecus = [e.ecu] if e.ecu in self.cfg.ecus else sorted(self.cfg.ecus)
        self.state.set_attacks(dict.fromkeys(ecus, text))
        log.error("update check refused (%s): %s", e.attack, e)

    def _client(self, name: str, staged: Path, when: datetime) -> RepositoryClient:
        ep = self.cfg.director if name == "director" else self.cfg.image
        return RepositoryClient(name, metadata_dir=staged, metadata_url=ep.metadata_url,
                                targets_url=self.cfg.image.targets_url, trusted_root=ep.root, fetcher=self.fetcher,
                                reference_time=when, config=self.cfg.limits.updater_config())

    def _verify(self, current: str, when: datetime, staged_d: Path, staged_i: Path) -> CheckResult:
        director = self._client("director", staged_d, when)
        director.refresh()
        image = self._client("image", staged_i, when)
        image.refresh()
        bundle = cross_check(director.top_level_targets(), image.target, ecus=self.cfg.ecus,
                             installed=self.state.installed, current_vehicle_version=current,
                             targets_url=self.cfg.image.targets_url)
        assignment = None
        if bundle is not None:
            assignment = self._with_baseline(bundle, image)
            if any(e.independent is not None for e in assignment.ecus):
                assignment = dataclasses.replace(assignment, director_targets=self._director_targets(staged_d))
        result = CheckResult(assignment, current, director.targets_version, image.targets_version,
                             when.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.director_store.commit(staged_d)
        self.image_store.commit(staged_i)
        self.state.check_verified(when)
        if assignment is None:
            log.info("update check: nothing to do for %s", current)
        else:
            log.info("update check: %s -> %s, %d ECU image(s)", current, assignment.target_vehicle_version,
                     len(assignment.ecus))
        return result

    def _with_baseline(self, bundle: VerifiedBundle, image: RepositoryClient) -> Assignment:
        info = bundle.baseline
        hashes = hashes_of(info, "image")
        cached = self._cached(info, hashes)
        if cached is not None:  # verified by an earlier check (a pending assignment): not downloaded again
            path, data = cached
            _check_baseline(bundle, info, data)
        else:
            tmp = self.cache.temp_path(f"baseline-{uuid.uuid4().hex}.xml")
            try:
                image.download(info, tmp)
                _check_baseline(bundle, info, tmp.read_bytes())
                found = hash_file(tmp, sha512=hashes.sha512 is not None)
                found.verify(hashes, f"baseline {info.path}")
                path = self.cache.admit(tmp, found.result(), info.length)
            finally:
                tmp.unlink(missing_ok=True)
        return Assignment(bundle.target_vehicle_version, bundle.ecus,
                          BaselineAssignment(info.path, info.length, hashes, path), self._config(bundle, image),
                          bundle.mandatory, bundle.deadline)

    def _cached(self, info: TargetFile, hashes: Hashes) -> tuple[Path, bytes] | None:
        """The target's copy in the package cache and its bytes, if they have the length and the hashes
        both repositories agree on now (hashed again here, as a download would be); else None."""
        path = self.cache.lookup(hashes)
        if path is None:
            return None
        if path.stat().st_size == info.length:
            data = path.read_bytes()
            found = StreamHasher(sha512=hashes.sha512 is not None)
            found.update(data)
            with contextlib.suppress(VerificationError):
                found.verify(hashes, f"cached {info.path}")
                return path, data
        log.warning("the cached copy of %s (%s) is not the verified one any more: dropped, downloading it again",
                    info.path, path)
        self.cache.remove(hashes.sha256)
        return None

    def _director_targets(self, staged: Path) -> BaselineAssignment:
        """The Director targets.json exactly as python-tuf verified and stored it, admitted to the cache: the
        bytes an independent-download ECU checks against its own Director root (partial verification)."""
        data = (staged / "targets.json").read_bytes()
        found = StreamHasher(sha512=True)
        found.update(data)
        hashes = found.result()
        tmp = self.cache.temp_path(f"director-targets-{uuid.uuid4().hex}.json")
        try:
            tmp.write_bytes(data)
            path = self.cache.admit(tmp, hashes, len(data))
        finally:
            tmp.unlink(missing_ok=True)
        return BaselineAssignment("director/targets.json", len(data), hashes, path)

    def _config(self, bundle: VerifiedBundle, image: RepositoryClient) -> ConfigAssignment | None:
        """The configuration change target, downloaded (length-capped, hash-checked by the TUF client) and parsed."""
        info = bundle.config
        if info is None:
            return None
        tmp = self.cache.temp_path(f"config-{uuid.uuid4().hex}.json")
        try:
            image.download(info, tmp)
            data = tmp.read_bytes()
        finally:
            tmp.unlink(missing_ok=True)
        hashes = hashes_of(info, "image")
        found = StreamHasher(sha512=hashes.sha512 is not None)
        found.update(data)
        found.verify(hashes, f"configuration {info.path}")
        try:
            values = custom.parse_config_document(data, f"configuration {info.path}")
        except ValueError as e:
            raise InvalidMetadataError(str(e), repository="image") from e
        return ConfigAssignment(info.path, info.length, hashes, values)


def _check_baseline(bundle: VerifiedBundle, info: TargetFile, data: bytes) -> None:
    """The signed baseline XML must parse and list every assigned image's software version for its ECU."""
    try:
        baseline = parse_software_baseline(data, source=f"signed baseline {info.path}")
    except BaselineFileError as e:
        raise BaselineMismatchError(f"the signed baseline XML {info.path} is not a valid software baseline: "
                                    f"{e}", repository="image") from e
    entry = next((en for en in baseline.entries if str(en.version) == bundle.target_vehicle_version), None)
    if entry is None:
        raise BaselineMismatchError(f"the signed baseline XML {info.path} has no entry for the target "
                                    f"vehicle version {bundle.target_vehicle_version!r}", repository="image")
    for ecu in bundle.ecus:
        expected = entry.ecus.get(ecu.ecu)
        if expected is None or ecu.software_version not in expected.versions:
            listed = sorted(expected.versions) if expected else "no entry"
            raise BaselineMismatchError(
                f"ECU {ecu.ecu}: assigned software {ecu.software_version} is not what the baseline of "
                f"{bundle.target_vehicle_version!r} lists ({listed})", repository="image", ecu=ecu.ecu)


def record_install(state: UptaneState, ecu: str, assignment: Assignment) -> None:
    """After a verified install: the ECU now holds the assigned image (report and counter floor)."""
    a = assignment.ecu(ecu)
    if a is None:
        raise ValueError(f"ECU {ecu} has no image in this assignment")
    state.record_installed(ecu, InstalledImage(a.target, a.length, a.hashes), a.release_counter)

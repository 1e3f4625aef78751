"""A local release directory (``otactl release build``) verified offline, as a campaign's assignment.

For the workshop or bench without a backend (``otactl install DIR``). The directory is
an Image repository: ``metadata/`` (TUF root, timestamp, snapshot, targets, consistent
snapshots), ``targets/`` (hash-prefixed files) and ``releases/<release>.json`` (which
image is for which ECU). Trust comes from the vehicle, not from the directory: python-tuf's
ngclient :class:`~tuf.ngclient.Updater` starts from the vehicle's trusted Image root
(``install.image_root`` in the engine's config, the same root dmclient trusts) and walks
the directory's root chain, timestamp, snapshot and targets with every signature,
threshold, version and expiry check; each image and the baseline XML are then fetched
through it, which checks length and hashes against the signed targets. The release
manifest is not signed, so nothing in it is believed unless the signed target agrees:
hardware id, release counter and software version of each image are compared with the
signed ``custom`` fields, and the baseline target must be signed for the release's target
vehicle version. Encrypted images are refused (the plaintext is not in the directory and
the content key belongs to dmclient); use ``otactl update`` for those.

The fetcher is written here because python-tuf ships only an HTTP one; it reads files
under the release directory and nothing outside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from agent.errors import ConfigurationError, VerificationError

CHUNK = 64 << 10


class DirectoryFetcher(FetcherInterface):
    """``file://`` URLs under one directory, as python-tuf's fetcher seam wants them."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _fetch(self, url: str) -> Iterator[bytes]:
        parts = urlsplit(url)
        path = Path(unquote(parts.path)).resolve()
        if parts.scheme != "file" or not path.is_relative_to(self.root):
            raise tuf_errors.DownloadHTTPError(f"{url} is outside the release directory", 403)
        if not path.is_file():
            raise tuf_errors.DownloadHTTPError(f"{path.name} not found", 404)
        return self._chunks(path)

    @staticmethod
    def _chunks(path: Path) -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk


def _hashes(d: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in d.items() if k in ("sha256", "sha512")}


def load_release(release_dir: Path, release: str | None, *, trusted_root: Path, work_dir: Path,
                 ecus: set[str], current_version: str | None) -> dict[str, Any]:
    """Verify ``release`` (the only one when None) of ``release_dir``; a check result for the campaign.

    Verified files are written under ``work_dir`` (the assignment's image and baseline paths).
    """
    releases = sorted((release_dir / "releases").glob("*.json"))
    if not releases:
        raise ConfigurationError("not a release directory: no releases/*.json", source=str(release_dir))
    if release is None:
        if len(releases) > 1:
            raise ConfigurationError(f"the directory holds {len(releases)} releases "
                                     f"({', '.join(p.stem for p in releases)}); name one", source=str(release_dir))
        path = releases[0]
    else:
        path = release_dir / "releases" / f"{release}.json"
        if path not in releases:
            raise ConfigurationError(f"no release {release!r} (releases: {', '.join(p.stem for p in releases)})",
                                     source=str(release_dir))
    try:
        manifest = json.loads(path.read_text())
        name = str(manifest["release"])
        target_version = str(manifest["target_vehicle_version"])
        images = list(manifest["images"])
        baseline_ref = dict(manifest["baseline"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigurationError(f"unreadable release manifest: {e}", source=str(path)) from e
    if target_version == current_version:
        raise ConfigurationError(f"the vehicle is already at {target_version}", source=str(path))

    meta = work_dir / "metadata"
    meta.mkdir(parents=True, exist_ok=True)
    try:
        anchor = trusted_root.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"cannot read the trusted Image root: {e}", source=str(trusted_root)) from e
    files = work_dir / name
    files.mkdir(parents=True, exist_ok=True)
    base = release_dir.resolve()
    try:
        updater = Updater(str(meta), f"file://{base}/metadata/", str(files), f"file://{base}/targets/",
                          fetcher=DirectoryFetcher(base), bootstrap=anchor)
        updater.refresh()
        ecu_json = []
        for i, image in enumerate(images):
            where = f"images[{i}]"
            ecu = str(image["ecu"])
            if ecu not in ecus:
                raise ConfigurationError(f"{where}: ECU {ecu!r} is not configured on this vehicle", source=str(path))
            info = updater.get_targetinfo(str(image["target"]))
            if info is None:
                raise VerificationError(f"{where}: target {image['target']!r} is not signed in the repository")
            custom = info.custom
            if custom.get("ciphertext") or image.get("ciphertext"):
                raise ConfigurationError(f"{where}: {ecu}'s image is encrypted; install it with 'otactl update'",
                                         source=str(path))
            for key in ("hardware_id", "release_counter", "software_version"):
                if custom.get(key) != image.get(key):
                    raise VerificationError(f"{where}: the manifest says {key} {image.get(key)!r}, the signed "
                                            f"target says {custom.get(key)!r}")
            local = updater.download_target(info, str(files / info.path.replace("/", "_")))
            ecu_json.append({"ecu": ecu, "target": info.path, "url": f"file://{local}", "length": info.length,
                             "hashes": _hashes(info.hashes), "release_counter": custom["release_counter"],
                             "hardware_id": custom["hardware_id"], "software_version": custom["software_version"],
                             "release": name, "flash_script": str(image.get("flash_script", "")),
                             "delta": None, "encryption": None, "path": local})
        binfo = updater.get_targetinfo(str(baseline_ref["target"]))
        if binfo is None or binfo.custom.get("vehicle_version") != target_version:
            raise VerificationError(f"the baseline {baseline_ref.get('target')!r} is not signed for {target_version}")
        bpath = updater.download_target(binfo, str(files / "baseline.xml"))
    except tuf_errors.RepositoryError as e:
        raise VerificationError(f"release {name}: verification failed: {e}") from e
    except tuf_errors.DownloadError as e:
        raise VerificationError(f"release {name}: {e}") from e
    except (KeyError, TypeError) as e:
        raise ConfigurationError(f"malformed release manifest: missing {e}", source=str(path)) from e
    return {"status": "update", "vehicle_version": current_version, "assignment": {
        "target_vehicle_version": target_version, "ecus": ecu_json,
        "baseline": {"target": binfo.path, "length": binfo.length, "hashes": _hashes(binfo.hashes),
                     "path": bpath}}}

"""One TUF repository as the vehicle sees it: a python-tuf ``Updater`` with an injected time.

Each check makes a fresh :class:`RepositoryClient` per repository (an ``Updater``
refreshes once in its life), over a *staged copy* of the repository's metadata
directory (:mod:`dmclient.uptane.metadata_store`), bootstrapped from the trust anchor
provisioned on the vehicle (``bootstrap=`` the root.json bytes from the config, not the
cached one): python-tuf then walks the rotated roots cached in ``root_history/`` and on
the server from there.

Reference time. python-tuf's ``Updater`` has no parameter for the time: its
``TrustedMetadataSet.__init__`` stores ``datetime.now(timezone.utc)`` in the public
attribute ``reference_time`` and every expiry check (final root, timestamp, snapshot,
targets, delegated targets) compares against that attribute
(``tuf/ngclient/_internal/trusted_metadata_set.py``). Nothing is judged against it
while the ``Updater`` is constructed (the bootstrap root's expiry is checked only
when the timestamp is loaded), so :func:`pin_reference_time` overwrites the attribute
right after construction, before ``refresh()``. ``Updater._trusted_set`` is private, so
this depends on python-tuf's internals (the same in tuf 5 to 7; ``setup.cfg`` pins
``tuf<8``): if the attribute is ever missing we refuse to run rather than silently fall
back to the system clock, and the freeze tests in ``tests/uptane`` prove the injected
time is the one used.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from tuf.api.metadata import TargetFile, Targets
from tuf.ngclient import Updater, UpdaterConfig

from agent.errors import ConfigurationError, OtaError
from dmclient.uptane.errors import InvalidMetadataError
from dmclient.uptane.fetcher import TufFetcher
from dmclient.uptane.tuf_errors import map_tuf_error

log = logging.getLogger(__name__)


def pin_reference_time(updater: Updater, when: datetime) -> None:
    """Make ``updater`` judge every expiry against ``when`` (aware UTC) instead of its own ``now()``."""
    trusted = getattr(updater, "_trusted_set", None)
    if trusted is None or not hasattr(trusted, "reference_time"):
        raise ConfigurationError("this python-tuf has no TrustedMetadataSet.reference_time: the configured time "
                                 "source cannot be applied (supported: tuf 5 to 7)")
    if when.tzinfo is None:
        raise ConfigurationError("reference time must be timezone-aware (UTC)")
    trusted.reference_time = when


class RepositoryClient:
    """A refreshed-once view of one repository (``name`` is ``director`` or ``image``)."""

    def __init__(self, name: str, *, metadata_dir: Path, metadata_url: str, targets_url: str, trusted_root: bytes,
                 fetcher: TufFetcher, reference_time: datetime, config: UpdaterConfig | None = None) -> None:
        self.name = name
        self.targets_url = targets_url
        metadata_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.updater = Updater(str(metadata_dir), metadata_url, target_dir=None, target_base_url=targets_url,
                                   fetcher=fetcher, config=config or UpdaterConfig(), bootstrap=trusted_root)
        except OtaError:
            raise
        except Exception as e:
            raise map_tuf_error(e, name) from e
        pin_reference_time(self.updater, reference_time)

    def refresh(self) -> None:
        """Root (rotations), timestamp, snapshot, top-level targets: verified, or our error."""
        try:
            self.updater.refresh()
        except OtaError:
            raise
        except Exception as e:
            raise map_tuf_error(e, self.name) from e

    def _targets(self) -> Targets:
        trusted = getattr(self.updater, "_trusted_set", None)
        if trusted is None:
            raise ConfigurationError("this python-tuf does not expose the trusted metadata set")
        targets: Targets = trusted.targets
        return targets

    @property
    def targets_version(self) -> int:
        return self._targets().version

    def top_level_targets(self) -> dict[str, TargetFile]:
        """Every target of the top-level targets role (the Director lists its assignment there)."""
        targets = self._targets()
        if targets.delegations is not None:
            raise InvalidMetadataError(f"{self.name} repository delegates: a Director must list its targets itself",
                                       repository=self.name)
        return dict(targets.targets)

    def target(self, name: str) -> TargetFile | None:
        """The target info for ``name`` (delegations followed), or None."""
        try:
            return self.updater.get_targetinfo(name)
        except OtaError:
            raise
        except Exception as e:
            raise map_tuf_error(e, self.name) from e

    def download(self, info: TargetFile, path: Path) -> Path:
        """Download ``info`` into ``path``, length-capped and hash-checked by python-tuf."""
        try:
            return Path(self.updater.download_target(info, str(path)))
        except OtaError:
            raise
        except Exception as e:
            path.unlink(missing_ok=True)
            raise map_tuf_error(e, self.name, target=info.path) from e

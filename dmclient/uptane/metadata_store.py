"""Trusted metadata directories that change only when a whole check verified ("verify, then commit").

python-tuf writes each piece of metadata into its directory as soon as that piece
verifies (timestamp before snapshot before targets). Uptane's cross-checks come later,
so a check that fails half way would leave a newer timestamp or targets file behind.
Instead every check works on a *staged copy*, and only a fully verified check makes it
the trusted state:

``<root>/<repository>/``
    ``current`` -> ``gen-000007``  (symlink: the trusted metadata directory)
    ``gen-000007/``               root.json, root_history/, timestamp.json, ...
    ``stage-<random>/``           the copy a running check refreshes

:meth:`MetadataStore.commit` fsyncs the staged files, renames the stage to the next
generation, swaps ``current`` with an atomic ``rename`` of a new symlink and fsyncs the
directory, then deletes older generations. A power cut leaves either the old or the new
generation current. Leftover stages and unreferenced generations are removed at start.

Most checks find nothing new: python-tuf then rewrites only the bootstrap root with the same
bytes. A staged copy that ends up with the same files and bytes as the trusted directory is
not committed (nothing to make durable: those bytes were synced when they became current); it
is kept and handed to the next check as its stage, so an unchanged check copies, fsyncs and
deletes no metadata files. Any check that does not commit (refused, failed) discards its stage.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from dmclient.durable import fsync_dir, fsync_file
from dmclient.errors import disk_full_as_storage_error

_GEN = re.compile(r"^gen-(\d{6,})$")


class MetadataStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.link = root / "current"
        self._spare: Path | None = None  # a stage equal to the trusted directory, for the next check
        self._clean()

    def _generation(self) -> int:
        if not self.link.is_symlink():
            return 0
        m = _GEN.match(os.readlink(self.link))
        return int(m.group(1)) if m else 0

    def current(self) -> Path | None:
        """The trusted metadata directory, or None before the first successful check."""
        return self.link if self.link.is_symlink() and self.link.is_dir() else None

    def _clean(self) -> None:
        keep = os.readlink(self.link) if self.link.is_symlink() else None
        for entry in self.root.iterdir():
            if entry.name in ("current", keep):
                continue
            if entry.name.startswith(("stage-", "gen-", ".current-")):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def stage(self) -> Path:
        """A private copy of the trusted directory (empty before the first check)."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.is_dir():
            return spare
        staged = Path(tempfile.mkdtemp(prefix="stage-", dir=self.root))
        cur = self.current()
        if cur is not None:
            shutil.copytree(cur.resolve(), staged, symlinks=True, dirs_exist_ok=True)
        return staged

    def discard(self, staged: Path) -> None:
        if staged == self._spare:  # committed unchanged: kept as the next stage
            return
        shutil.rmtree(staged, ignore_errors=True)

    def commit(self, staged: Path) -> Path:
        """Make ``staged`` the trusted directory, durably; returns the trusted directory's real path.

        A stage with the same content as the trusted directory changes nothing: it is kept as
        the next stage and the trusted generation stays as it is.
        """
        cur = self.current()
        if cur is not None and _tree(staged) == _tree(cur.resolve()):
            self._spare = staged
            return cur.resolve()
        for dirpath, _dirs, files in os.walk(staged):
            for name in files:
                p = Path(dirpath, name)
                if not p.is_symlink():
                    fsync_file(p)
            fsync_dir(Path(dirpath))
        gen = f"gen-{self._generation() + 1:06d}"
        target = self.root / gen
        tmp_link = self.root / f".current-{os.getpid()}"
        with disk_full_as_storage_error("making the trusted metadata current in", self.root):
            os.rename(staged, target)
            tmp_link.unlink(missing_ok=True)
            os.symlink(gen, tmp_link)
            os.replace(tmp_link, self.link)
        fsync_dir(self.root)
        self._clean()
        return target



def _tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a symlink's target, ``"/"`` for a directory."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "/"
            else:
                out[rel] = p.read_bytes()
    return out

"""Uptane-style repositories of the bench backend (python-tuf metadata API).

* :mod:`.keys`, :mod:`.tufrepo`: keys generated at run time; a consistent-snapshot TUF
  repository on disk, root rotation;
* :mod:`.release_spec`, :mod:`.builder`, :mod:`.image`, :mod:`.release_manifest`: the
  release builder (``otactl release build``) and the Image repository it writes;
* :mod:`.route`, :mod:`.vehicles`, :mod:`.director`: task routes, the vehicle
  registry and the per-vehicle Director;
* :mod:`.config`, :mod:`.routes`: the bench backend's ``repositories`` section and its
  aiohttp routes.
"""

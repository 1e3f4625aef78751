"""Uptane-style update metadata on the vehicle (a primary's full verification).

* :mod:`.client`: a check, end to end (manifest upload, Director and Image refresh,
  cross-checks, baseline XML); :mod:`.service`: the ``dmclient.check`` IPC method;
* :mod:`.repository`, :mod:`.fetcher`, :mod:`.tuf_errors`, :mod:`.timesource`: python-tuf
  ngclient over dmclient's mutual-TLS fetcher, with an injected reference time and its
  exceptions mapped onto :mod:`.errors`;
* :mod:`.verification`: the Director / Image cross-checks (pure); :mod:`.assignment`:
  the verified result; :mod:`.custom`: the targets' ``custom`` fields (shared with the
  bench repositories);
* :mod:`.manifest`, :mod:`.signing`: the signed vehicle version manifest;
* :mod:`.state`, :mod:`.metadata_store`: installed images, counters, attacks (SQLite);
  staged metadata directories committed only after a full verification;
* :mod:`.config`: the ``uptane`` config section.
"""

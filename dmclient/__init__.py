"""ota-dmclient: network, trust, downloads and the package cache.

Downloads (issue 3), one concern per module:

=====================  ============================================================================
:mod:`.daemon`         ``ota-dmclient``: the runtime daemon, IPC methods / events, progress task
:mod:`.config`         the ``dmclient`` config section (backend, PKI paths, cache, limits)
:mod:`.manager`        many targets at once within a limit; pause / resume / cancel; status; restart
:mod:`.job`            one target to the cache: cache hit, delta with fallback, (encrypted) full image
:mod:`.transfer`       one resumable, length-capped, hash-verified transfer into its ``.part``
:mod:`.fetcher`        the Fetcher ABC (error normalisation) and the requests implementation
:mod:`.tls`            the mutual-TLS requests session, TLS files checked at start
:mod:`.retry`          back-off with jitter, ``Retry-After`` (seconds and HTTP-date)
:mod:`.state`          SQLite (WAL, synchronous=FULL): transfers, targets, cache index, pins
:mod:`.partfile`       the ``.part`` file (raw fd, ENOSPC -> StorageFullError)
:mod:`.cache`          content-addressed package cache, budget, eviction that respects pins
:mod:`.delta`          bsdiff4 reconstruction, base and result verified
:mod:`.encryption`     AES-256-GCM content, ECDH-P256 + HKDF + AES-KW key wrap, streaming decryption
:mod:`.digests`        expected hashes, (threaded) stream hashing
:mod:`.order`          download orders parsed and validated from JSON
:mod:`.progress`       rate / ETA; :mod:`.control`: pause / cancel signalling
:mod:`.space`          free-space check; :mod:`.durable`: fsync + atomic publish; :mod:`.errors`
=====================  ============================================================================

:mod:`.uptane` holds the update check (issue 4).
"""

"""The bench backend: HTTPS with client certificates, files with correct ranges, fault knobs.

* :mod:`bench.backend.server`: the aiohttp apps (mutual-TLS port, admin loopback port);
* :mod:`bench.backend.files`: ``/files/{path}`` with Range / If-Range / ETag and faults;
* :mod:`bench.backend.ranges`: the range decision, pure;
* :mod:`bench.backend.faults`: fault knobs and request accounting;
* :mod:`bench.backend.admin`: admin routes; :mod:`bench.backend.config`: the YAML config;
* :mod:`bench.backend.cli`: ``otactl bench backend`` / ``python -m bench.backend``.
"""

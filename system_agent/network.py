"""``network_reachable``: whether the backend answers, for the rules of the download phase.

The system agent holds no network credentials (only ``ota-dmclient`` does): it opens a TCP
connection to the backend's host and port and closes it, every ``interval`` s. The result
is a state signal like the CAN ones: with an age, and unknown once older than three
intervals (a probe that hangs never leaves an old "reachable" standing). Before the first
probe has answered, :meth:`NetworkProbe.settling` says how long a verdict should wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from agent.errors import ConfigurationError

log = logging.getLogger(__name__)

SIGNAL = "network_reachable"
#: s after a probe's timeout for its result to be recorded
RECORD_SLACK = 0.25


class NetworkProbe:
    def __init__(self, url: str, *, interval: float, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise ConfigurationError(f"network probe: no host in {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.value: bool | None = None
        self.at: float | None = None
        #: when :meth:`run` began probing
        self.since: float | None = None

    def reading(self) -> bool | None:
        """The last result, or None (unknown) before the first probe and once it is too old."""
        if self.at is None or self.clock() - self.at > 3 * self.interval:
            return None
        return self.value

    def settling(self) -> float:
        """Seconds the first probe may still take (0 once one has answered): its timeout from the start
        of :meth:`run`, plus a moment to record the result."""
        if self.at is not None:
            return 0.0
        now = self.clock()
        start = now if self.since is None else self.since
        return max(0.0, start + self.timeout + RECORD_SLACK - now)

    def record(self, reachable: bool) -> bool:
        """Take a probe's result; True if the reading changed."""
        before = self.reading()
        self.value, self.at = reachable, self.clock()
        return self.reading() != before

    async def probe(self) -> bool:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as e:
            log.debug("network probe %s:%d: %s", self.host, self.port, e)
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    async def run(self, on_change: Callable[[], None]) -> None:
        self.since = self.clock()
        while True:
            if self.record(await self.probe()):
                log.info("system_agent: backend %s:%d %s", self.host, self.port,
                         "reachable" if self.value else "not reachable")
                on_change()
            await asyncio.sleep(self.interval)

"""Bounded retries with exponential back-off and full jitter, and ``Retry-After``.

Pure: the clock (for HTTP-date ``Retry-After``) and the random source are injected, the
caller sleeps. ``delay(attempt, retry_after)`` gives the wait before retry number
``attempt`` (1-based): ``uniform(0, min(max_delay, base * 2**(attempt-1)))`` (AWS
"full jitter"), but never less than what the server asked for in ``Retry-After``;
a server asking for more than ``max_retry_after`` ends the retries with a clear error
rather than parking the download silently.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.errors import TransportError


@dataclass(frozen=True)
class RetryPolicy:
    #: consecutive failed attempts (without a byte of progress) before giving up
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    #: longest Retry-After honoured; a longer one fails the download with a clear error
    max_retry_after: float = 300.0
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        wait: float = ceiling * self.random()
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                raise TransportError(f"server asked to retry after {retry_after:.0f} s, "
                                     f"more than the configured limit of {self.max_retry_after:.0f} s")
            wait = max(wait, retry_after)
        return wait


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (epoch seconds): delta-seconds or an HTTP-date.

    Unparseable values give ``None`` (the normal back-off applies); dates in the past give 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # not "²" (isdigit, no int) nor 5000 digits (past int()'s limit)
        return float(text)  # an absurd delay is inf: longer than max_retry_after, refused clearly
    import email.utils  # loaded with requests on the first download, not in an idle daemon

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses naive
        return None
    return max(0.0, when.timestamp() - now)

"""The watchdog decision with an injected clock, and its pings on a real datagram socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from ipc_helpers import NotifyListener

from agent.runtime.sdnotify import Notifier
from agent.runtime.watchdog import Watchdog, WatchdogPinger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_busy_workers_past_their_deadline_are_stalled_and_idle_ones_never() -> None:
    clock = Clock()
    dog = Watchdog(clock)
    fetch = dog.worker("fetch", deadline=10)
    flash = dog.worker("flash", deadline=2)
    assert dog.stalled() == []
    fetch.busy()
    clock.now += 9
    fetch.heartbeat()
    clock.now += 9.5
    assert dog.stalled() == []  # 9.5 s since the last heartbeat, deadline 10 s
    clock.now += 1
    assert [w.name for w in dog.stalled()] == ["fetch"]
    assert {s.name: s.state for s in dog.snapshot()} == {"fetch": "stalled", "flash": "idle"}
    clock.now += 1000
    assert [w.name for w in dog.stalled()] == ["fetch"]  # idle flash has no deadline however long
    fetch.idle()
    assert dog.stalled() == []
    flash.busy()
    clock.now += 2.5
    assert [w.name for w in dog.stalled()] == ["flash"]
    flash.close()
    assert dog.stalled() == [] and [s.name for s in dog.snapshot()] == ["fetch"]


def test_registration_errors() -> None:
    dog = Watchdog(Clock())
    dog.worker("a", deadline=1)
    with pytest.raises(ValueError, match=r"already registered"):
        dog.worker("a", deadline=1)
    with pytest.raises(ValueError, match=r"deadline must be > 0"):
        dog.worker("b", deadline=0)


def test_pinger_pings_only_while_workers_progress(tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "n.sock")
    clock = Clock()
    dog = Watchdog(clock)
    worker = dog.worker("download", deadline=5, idle=False)
    notifier = Notifier(str(listener.path))
    pinger = WatchdogPinger(dog, notifier)
    try:
        assert pinger.tick() is True
        assert listener.recv(5) == {"WATCHDOG": "1"}

        clock.now += 6  # no heartbeat for 6 s > 5 s
        assert pinger.tick() is False
        status = listener.recv(5)
        assert status == {"STATUS": "watchdog: stalled: download (no progress for 6.0 s, deadline 5 s)"}
        clock.now += 1
        assert pinger.tick() is False  # still stalled: no ping, and the status is not repeated

        worker.heartbeat()
        assert pinger.tick() is True
        assert listener.recv(5) == {"STATUS": "watchdog: all workers progressing"}
        assert listener.recv(5) == {"WATCHDOG": "1"}
        # nothing else was sent: exactly one datagram per decision above
        listener.sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.sock.recv(100)
    finally:
        notifier.close()
        listener.close()


def test_without_notify_socket_the_pinger_decides_but_sends_nothing() -> None:
    dog = Watchdog(Clock())
    pinger = WatchdogPinger(dog, Notifier(None))
    assert pinger.tick() is False  # nothing sent

"""sd_notify over real datagram sockets (path and abstract), and the journald log format."""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
from ipc_helpers import NotifyListener

from agent.runtime.logs import JournalFormatter, setup_logging, writes_to_journal
from agent.runtime.sdnotify import Notifier, notify_address, watchdog_period


def test_notify_to_a_socket_path(tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(listener.path)})
    try:
        assert notifier.ready("serving on /run/ota-agent/x.sock")
        assert listener.recv(5) == {"READY": "1", "STATUS": "serving on /run/ota-agent/x.sock"}
        assert notifier.status("line one\nline two")
        assert listener.recv(5) == {"STATUS": "line one line two"}
        assert notifier.reloading()
        reloading = listener.recv(5)
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert notifier.stopping()
        assert listener.recv(5) == {"STOPPING": "1"}
        assert notifier.watchdog()
        assert listener.recv(5) == {"WATCHDOG": "1"}
        with pytest.raises(ValueError, match=r"one KEY=value line"):
            notifier.notify("READY=1\nX=2")
    finally:
        notifier.close()
        listener.close()


def test_notify_to_an_abstract_socket() -> None:
    name = f"ota-test-notify-{os.getpid()}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(5)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
    try:
        assert notifier.ready()
        assert receiver.recv(100) == b"READY=1"
    finally:
        notifier.close()
        receiver.close()


def test_notify_is_a_no_op_without_systemd_and_a_vanished_socket_is_not_fatal(tmp_path: Path) -> None:
    assert not Notifier.from_env({}).enabled
    assert Notifier.from_env({}).ready() is False
    assert notify_address("vsock:2:1234") is None
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.ready() is False  # logged, not raised
    gone.close()


def test_watchdog_period_is_read_only_when_it_is_meant_for_this_process() -> None:
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None


def _record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("dmclient.cache", level, __file__, 1, msg, (), exc_info)


def test_journal_format_carries_the_priority_on_every_line() -> None:
    formatter = JournalFormatter()
    assert formatter.format(_record(logging.WARNING, "cache at 91%")) == "<4>dmclient.cache: cache at 91%"
    assert formatter.format(_record(logging.DEBUG, "x")).startswith("<7>")
    text = formatter.format(_record(logging.ERROR, "failed", exc=True))
    lines = text.split("\n")
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journal_stream_is_recognised_only_for_the_stream_it_names(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert writes_to_journal(stream, env)
        assert not writes_to_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not writes_to_journal(stream, {})
        assert not writes_to_journal(io.StringIO(), env)
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        try:
            setup_logging("info", stream=stream, env=env)
            logging.getLogger("dmclient.cache").info("evicted %s", "a.bin")
            logging.getLogger("dmclient.cache").debug("not shown")
            setup_logging("info", stream=stream, env={})
            logging.getLogger("dmclient.cache").warning("plain")
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
    lines = (tmp_path / "log").read_text().splitlines()
    assert lines[0] == "<6>dmclient.cache: evicted a.bin"
    assert lines[1].endswith(" WARNING dmclient.cache: plain") and lines[1][:4].isdigit()
    assert len(lines) == 2

"""python-can interface ``benchhub``: a CAN bus carried by the bench hub.

Registered under the ``can.interface`` entry point, so any python-can user
(can-isotp, cantools, ``python -m can.logger``) opens it with
``can.Bus(interface="benchhub", channel="powertrain")``.

Why not a stock interface: ``virtual`` stays inside one process,
``udp_multicast`` drops frames under unpaced bursts (no flow control), and
``socketcand`` needs a kernel CAN device behind the daemon and has no CAN FD.
The hub relays over Unix stream sockets, so nothing is lost and every node
sees frames in one order, as on a real bus.

``can_filters`` (or ``set_filters``) are applied by the hub, as acceptance filters in a
controller or the kernel's ``CAN_RAW_FILTER`` on socketcan: frames that match none never
reach this process. python-can still checks each received frame against them.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
import time
from typing import Any

import can
from can.bus import BusABC, CanProtocol

from bench.canbus import wire
from bench.canbus.paths import socket_path


class BenchHubBus(BusABC):
    """A node on a bench hub channel."""

    def __init__(
        self,
        channel: str,
        can_filters: can.typechecking.CanFilters | None = None,
        receive_own_messages: bool = False,
        fd: bool = False,
        join_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        path = socket_path(str(channel))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            _await_welcome(sock, join_timeout)
        except OSError as e:
            sock.close()
            raise can.CanInitializationError(
                f"bench bus {channel!r}: no hub at {path} ({e.strerror or e}); "
                "start the bench first (otactl bench ecus / otactl bench bus)"
            ) from e
        self._sock = sock
        self._send_lock = threading.Lock()
        self._inbox: collections.deque[bytes] = collections.deque()
        self._buffer = bytearray()
        self._receive_own = receive_own_messages
        self._own: collections.deque[can.Message] = collections.deque()
        self.channel = str(channel)
        self.channel_info = f"bench hub {channel} ({path})"
        self._can_protocol = CanProtocol.CAN_FD if fd else CanProtocol.CAN_20
        self._hub_filters: list[wire.Filter] | None = None
        #: filter records the hub has not acknowledged yet: until then frames are checked here too
        self._unacked = 0
        super().__init__(channel=channel, can_filters=can_filters, **kwargs)

    def _apply_filters(self, filters: can.typechecking.CanFilters | None) -> None:
        """Hand the filters to the hub (python-can calls this from ``__init__`` and ``set_filters``)."""
        record = wire.encode_filters(filters)
        parts = wire.split(bytearray(record))
        hub_filters: list[wire.Filter] | None = None
        for part in parts:
            hub_filters = wire.apply_filter_record(part, hub_filters)
        self._hub_filters = hub_filters
        if hub_filters is not None:  # what was read under the previous filters
            self._inbox = collections.deque(r for r in self._inbox if wire.matches(r, hub_filters))
        self._unacked += len(parts)  # the hub acks each
        with self._send_lock:
            try:
                self._sock.sendall(record)
            except OSError as e:
                raise can.CanOperationError(f"bench bus {self.channel!r}: {e}") from e

    def _received(self, records: list[bytes]) -> list[bytes]:
        """The frames among records read from the hub: acks counted; while one is awaited, frames
        relayed before the hub had the new filters are dropped here."""
        if not self._unacked:
            return records
        frames = []
        for r in records:
            if wire.is_filter(r):
                self._unacked -= 1
            elif not self._unacked or wire.matches(r, self._hub_filters):
                frames.append(r)
        return frames

    def fileno(self) -> int:
        return self._sock.fileno()

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if self._own:
            return self._own.popleft(), False
        if not self._inbox:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._inbox:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if remaining != 0.0:  # a poll (recv(0), as a notifier's or an event loop's) needs no select
                    ready, _, _ = select.select([self._sock], [], [], remaining)
                    if not ready:
                        return None, False
                try:
                    chunk = self._sock.recv(262144, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    return None, False
                except OSError as e:
                    raise can.CanOperationError(f"bench bus {self.channel!r}: {e}") from e
                if not chunk:
                    raise can.CanOperationError(f"bench bus {self.channel!r}: hub closed the connection")
                self._buffer += chunk
                try:
                    records = wire.split(self._buffer)
                except ValueError as e:
                    raise can.CanOperationError(str(e)) from e
                self._inbox.extend(self._received(records))
                if deadline is not None and time.monotonic() >= deadline and not self._inbox:
                    return None, False
        record = self._inbox.popleft()
        return wire.decode(record, channel=self.channel, timestamp=time.time()), self._hub_filters is not None

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        if msg.is_fd and self._can_protocol is not CanProtocol.CAN_FD:
            raise can.CanOperationError("CAN FD frame on a bus opened without fd=True")
        msg.timestamp = time.time()
        record = wire.encode(msg)
        with self._send_lock:
            try:
                self._sock.sendall(record)
            except OSError as e:
                raise can.CanOperationError(f"bench bus {self.channel!r}: {e}") from e
        if self._receive_own:
            own = wire.decode(record, channel=self.channel)
            own.is_rx = False
            self._own.append(own)

    def shutdown(self) -> None:
        super().shutdown()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _await_welcome(sock: socket.socket, timeout: float) -> None:
    """Block until the hub confirms the node has joined the channel."""
    sock.settimeout(timeout)
    got = b""
    try:
        while len(got) < len(wire.WELCOME):
            chunk = sock.recv(len(wire.WELCOME) - len(got))
            if not chunk:
                raise ConnectionError("hub closed the connection during the join")
            got += chunk
    except TimeoutError as e:
        raise TimeoutError(f"hub did not confirm the join within {timeout} s") from e
    finally:
        sock.settimeout(None)
    if got != wire.WELCOME:
        raise ConnectionError(f"not a bench hub (greeting {got!r})")

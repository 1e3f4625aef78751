"""Who is at the other end of a Unix socket (SO_PEERCRED), and who may be.

The kernel fills SO_PEERCRED at ``connect()``/``listen()`` time, so it cannot
be forged by the peer. Supplementary groups come from SO_PEERGROUPS (Linux
4.13+) when the kernel has it, so a user who is in a daemon's allowed group
only as a supplementary group is still recognised.

The same :class:`AccessPolicy` serves both ends: the daemon checks who
connects, and the client checks who runs the daemon it reached (so a process
squatting a socket path cannot pose as ``ota-dmclient``).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)

_UCRED = struct.Struct("iII")  # struct ucred { pid_t pid; uid_t uid; gid_t gid; }
# SO_PEERGROUPS is 59 in asm-generic (x86, arm, arm64, riscv); Python only exports it on new builds
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59 if sys.platform.startswith("linux") else None)
_MAX_GROUPS = 256  # CPython's getsockopt() caps the buffer at 1024 bytes


@dataclass(frozen=True)
class PeerCred:
    """The credentials of a socket peer: process id, effective uid and gid, supplementary groups."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid} gid {self.gid}"


def peer_credentials(sock: socket.socket) -> PeerCred:
    """The peer of a connected AF_UNIX socket; ``OSError`` if the kernel cannot say."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return PeerCred(pid=pid, uid=uid, gid=gid, groups=_peer_groups(sock))


def _peer_groups(sock: socket.socket) -> frozenset[int]:
    if _SO_PEERGROUPS is None:
        return frozenset()
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_GROUPS)
    except OSError as e:
        if e.errno not in (errno.ENOPROTOOPT, errno.ERANGE, errno.EINVAL):
            raise
        log.debug("SO_PEERGROUPS unavailable (%s); checking the primary gid only", e)
        return frozenset()
    return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


@dataclass(frozen=True)
class AccessPolicy:
    """Which peers may connect: a peer is allowed if its uid is in ``uids`` or any of its groups in ``gids``.

    The default, :meth:`default`, is root plus the uid the process runs as.
    A configured list replaces the default (root included: configure uid 0
    explicitly if root must keep access).
    """

    uids: frozenset[int]
    gids: frozenset[int] = frozenset()

    @classmethod
    def default(cls) -> AccessPolicy:
        return cls(uids=frozenset({0, os.geteuid()}))

    def allows(self, peer: PeerCred) -> bool:
        return peer.uid in self.uids or peer.gid in self.gids or bool(peer.groups & self.gids)

    def describe(self) -> str:
        uids = ", ".join(map(str, sorted(self.uids))) or "none"
        gids = ", ".join(map(str, sorted(self.gids))) or "none"
        return f"allowed uids: {uids}; allowed gids: {gids}"

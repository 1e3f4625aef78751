"""The SOME/IP service the tests offer and consume: methods, events and a field, UDP and TCP."""

from __future__ import annotations

import hashlib

from agent.someip.interface import EventSpec, FieldSpec, MethodSpec, ServiceInterface
from agent.someip.serialization import UINT8, UINT32, UINT64, Array, Bytes, String, Struct

ECHO = Struct(("text", String()), ("count", UINT32), ("tags", Array(UINT8)), name="Echo")
PROGRESS = Struct(("done", UINT64), ("total", UINT64), name="Progress")
DIGEST = Struct(("length", UINT64), ("sha256", Bytes(length_field=1)), name="Digest")

SERVICE = ServiceInterface(
    name="demo", service_id=0x4F54, instance_id=0x0001, major_version=1, minor_version=3,
    methods={
        "echo": MethodSpec(0x0001, ECHO, ECHO),
        "refuse": MethodSpec(0x0002, UINT8),
        "bulk": MethodSpec(0x0003, UINT32, Bytes(), reliable=True),
        "upload": MethodSpec(0x0004, Bytes(), DIGEST, reliable=True),
        "emit": MethodSpec(0x0005, UINT32),
        "poke": MethodSpec(0x0006, UINT32, fire_and_forget=True),
    },
    events={
        "progress": EventSpec(0x8001, PROGRESS, (0x0001,)),
        "chunk": EventSpec(0x8002, Bytes(), (0x0002,), reliable=True),
    },
    fields={"status": FieldSpec(String(), getter=0x0010, setter=0x0011, notifier=0x8010, eventgroups=(0x0001,))},
)

#: application return code the provider answers "refuse" with (PRS: 0x20..0x5E are service-specific)
REFUSED = 0x21


def pattern(size: int) -> bytes:
    """Deterministic bulk content: the consumer checks it byte for byte."""
    block = hashlib.sha256(b"someip bulk").digest()
    return (block * (size // len(block) + 1))[:size]

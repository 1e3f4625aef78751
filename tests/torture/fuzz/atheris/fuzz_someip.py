"""atheris: a SOME/IP datagram from the vehicle network through the header, SD and payload decoders."""

from __future__ import annotations

from dataclasses import replace

import atheris
from _harness import PROJECT, run

with atheris.instrument_imports(include=PROJECT):  # the codecs; the HMI service around its types is no target
    import agent.someip.serialization  # noqa: F401
    from agent.errors import SomeIpError
    from agent.someip.message import Message, MessageType, split_datagram
    from agent.someip.sd_message import SD_METHOD_ID, SD_SERVICE_ID, decode_sd, encode_sd, is_sd

from hmi_agent.someip_service import hmi_interface

_IFACE = hmi_interface()
TYPES = [t for m in _IFACE.methods.values() for t in (m.request, m.response)] + \
    [e.type for e in _IFACE.events.values()] + [f.type for f in _IFACE.fields.values()]


def datagram(fdp: atheris.FuzzedDataProvider) -> bytes:
    """Raw bytes, or (so that short runs get past the header) a well-formed header before fuzzed bytes:
    an SD one, or any ids."""
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        return bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    if mode == 1:
        message = Message(SD_SERVICE_ID, SD_METHOD_ID, 0, 1 + fdp.ConsumeIntInRange(0, 0xFFFE), 1,
                          MessageType.NOTIFICATION)
    else:
        message = Message(fdp.ConsumeUInt(2), fdp.ConsumeUInt(2), fdp.ConsumeUInt(2), fdp.ConsumeUInt(2),
                          fdp.ConsumeUInt(1), MessageType.RESPONSE, fdp.ConsumeUInt(1))
    return replace(message, payload=bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))).encode()


def target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    payload_type = TYPES[fdp.ConsumeIntInRange(0, len(TYPES) - 1)]
    raw = datagram(fdp)
    for message in split_datagram(raw):
        if message.encode() not in raw:
            raise AssertionError(f"{message} does not re-encode to its bytes")
        if is_sd(message):
            sd = decode_sd(message)
            if decode_sd(encode_sd(sd, session_id=message.session_id)) != sd:
                raise AssertionError(f"{sd} does not round-trip")
            continue
        value = payload_type.decode(message.payload)
        encoded = payload_type.encode(value)
        if payload_type.encode(payload_type.decode(encoded)) != encoded:
            raise AssertionError(f"{payload_type.name}: {value!r} does not round-trip")


if __name__ == "__main__":
    run(target, (SomeIpError,))

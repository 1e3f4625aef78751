"""atheris: a line from a peer through the JSON-RPC decoder and the protocol's validation."""

from __future__ import annotations

import atheris
from _harness import PROJECT, run

with atheris.instrument_imports(include=PROJECT):
    from agent.ipc.jsonrpc import Notification, Request, decode
    from agent.ipc.protocol import PROTOCOL


METHODS = sorted(PROTOCOL.methods)


def target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    method = METHODS[fdp.ConsumeIntInRange(0, len(METHODS) - 1)]
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    message = decode(rest)
    if isinstance(message, (Request, Notification)):
        PROTOCOL.check_params(message.method, message.params)
    # the same params under a declared method name
    line = b'{"jsonrpc":"2.0","id":1,"method":"' + method.encode() + b'","params":' + rest + b"}"
    message = decode(line)
    if isinstance(message, Request):
        PROTOCOL.check_params(message.method, message.params)


if __name__ == "__main__":
    run(target)

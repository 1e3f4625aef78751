"""atheris: backend JSON into download orders, targets' custom objects and the signed manifest check."""

from __future__ import annotations

import json

import atheris

# third-party code is imported before the instrumented block: the project's parsers are the target
import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
import requests  # noqa: F401
import tuf.api.metadata  # noqa: F401
from _harness import PROJECT, run
from securesystemslib.signer import CryptoSigner  # not instrumented: it pulls in every cloud signer

with atheris.instrument_imports(include=PROJECT):
    from dmclient.order import Order
    from dmclient.retry import parse_retry_after
    from dmclient.uptane import custom
    from dmclient.uptane.manifest import verify_manifest


PARSERS = [custom.ImageEcuImage.parse, custom.ImageCiphertext.parse, custom.ImageDelta.parse,
           custom.ImageBaseline.parse, custom.DirectorEcuImage.parse, custom.DirectorBaseline.parse]
KEY = CryptoSigner.generate_ed25519().public_key


def target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, len(PARSERS) + 2)
    rest = fdp.ConsumeBytes(fdp.remaining_bytes())
    if which == len(PARSERS):
        verify_manifest(rest, KEY)
        return
    if which == len(PARSERS) + 1:
        delay = parse_retry_after(rest.decode("latin-1"), 1_700_000_000.0)
        assert delay is None or delay >= 0
        return
    try:
        doc = json.loads(rest)
    except (ValueError, RecursionError):
        return  # not JSON: the HTTP layer's JSON decoding refuses it before these parsers
    if which == len(PARSERS) + 2:
        Order.parse(doc)
        return
    try:
        PARSERS[which](doc, "atheris")
    except ValueError as e:  # the parsers' contract; the verifier wraps it in InvalidMetadataError
        assert str(e)


if __name__ == "__main__":
    run(target)

"""Fuzzing the project's own parsing of what comes from the backend (or from a peer acting for it).

TUF metadata itself is python-tuf's (tests/uptane); here: the ``custom`` objects of targets
(Image and Director repositories) - contract: ``ValueError`` naming the field, which the
verifier turns into InvalidMetadataError -, download orders, the signed vehicle manifest the
backend checks, and the ``Retry-After`` header of a refused download.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from securesystemslib.signer import CryptoSigner

from dmclient.digests import Hashes
from dmclient.encryption import ALGORITHM, KEY_WRAP, NONCE_BYTES, EncryptionSpec
from dmclient.order import Order
from dmclient.retry import parse_retry_after
from dmclient.uptane import custom
from dmclient.uptane.manifest import VehicleManifest, verify_manifest

from .fuzzkit import FUZZ, JSON, TIMEOUT, clear_outcome, edit_document, mutate

pytestmark = pytest.mark.timeout(TIMEOUT)

HASHES = {"sha256": "ab" * 32, "sha512": "cd" * 64}
SPEC = {"algorithm": ALGORITHM, "key_wrap": KEY_WRAP, "ephemeral_key": base64.b64encode(bytes(65)).decode(),
        "wrapped_key": base64.b64encode(bytes(40)).decode(), "nonce": base64.b64encode(bytes(NONCE_BYTES)).decode(),
        "hashes": HASHES}
#: one good-looking object per parser (the fuzzer edits them)
SAMPLES: dict[str, tuple[Any, Any]] = {
    "image ecu-image": (custom.ImageEcuImage.parse, {
        "type": "ecu-image", "hardware_id": "ENG-4711", "release_counter": 3, "software_version": "1.1.0",
        "release": "bv-1.1.0", "ciphertext": "engine/engine-1.1.0.hex.enc"}),
    "image ciphertext": (custom.ImageCiphertext.parse, {"type": "ciphertext", "of": "engine/engine-1.1.0.hex"}),
    "image delta": (custom.ImageDelta.parse, {"type": "delta", "of": "engine/engine-1.1.0.hex",
                                              "base_version": "1.0.0", "base": HASHES}),
    "image baseline": (custom.ImageBaseline.parse, {"type": "baseline", "vehicle_version": "BV OS D 1.1.0"}),
    "director ecu-image": (custom.DirectorEcuImage.parse, {
        "type": "ecu-image", "ecu": "engine", "hardware_id": "ENG-4711", "release_counter": 3,
        "software_version": "1.1.0", "release": "bv-1.1.0", "target_vehicle_version": "BV OS D 1.1.0",
        "flash_script": "single_bank", "delta": {"target": "engine/e.bsdiff", "base": HASHES},
        "encryption": {"target": "engine/e.enc", "spec": SPEC}}),
    "director baseline": (custom.DirectorBaseline.parse, {"type": "baseline",
                                                          "target_vehicle_version": "BV OS D 1.1.0"}),
    "hashes": (Hashes.parse, HASHES),
    "encryption spec": (EncryptionSpec.parse, SPEC),
}
ORDER = {"targets": [{"name": "engine-1.1.0", "url": "https://backend/targets/e.hex", "length": 16384,
                      "hashes": HASHES, "delta": {"base": {"sha256": "11" * 32, "sha512": "22" * 64},
                                                  "url": "https://backend/targets/e.bsdiff", "length": 100,
                                                  "hashes": {"sha256": "33" * 32, "sha512": "44" * 64}}}],
         "pin": "campaign:42"}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_samples_parse(name: str) -> None:
    parse, sample = SAMPLES[name]
    assert not isinstance(clear_outcome(parse, sample, name, allowed=(ValueError,)), BaseException)


@FUZZ
@given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_target_custom_objects(name: str, data: st.DataObject) -> None:
    parse, sample = SAMPLES[name]
    clear_outcome(parse, edit_document(sample, data.draw), name, allowed=(ValueError,))
    clear_outcome(parse, data.draw(JSON), name, allowed=(ValueError,))


@FUZZ
@given(data=st.data())
def test_download_orders(data: st.DataObject) -> None:
    assert isinstance(Order.parse(ORDER), Order)
    clear_outcome(Order.parse, edit_document(ORDER, data.draw), base_url="https://backend/")
    clear_outcome(Order.parse, data.draw(JSON))


SIGNER = CryptoSigner.generate_ed25519()


@FUZZ
@given(data=st.data())
def test_signed_vehicle_manifests(data: st.DataObject) -> None:
    signed = {"type": "vehicle-manifest", "format": 1, "vin": "BENCHVIN000000001", "primary_id": "tbox-0001",
              "vehicle_version": "BV OS D 1.0.0", "issued": "2026-01-01T00:00:00Z", "ecu_version_reports": [
                  {"ecu": "engine", "installed": {"name": "engine/e.hex", "length": 10, "hashes": HASHES},
                   "release_counter": 1, "report_counter": 1, "attack": None}]}
    clear_outcome(VehicleManifest.parse, edit_document(signed, data.draw), allowed=(ValueError,))
    envelope = json.dumps({"signatures": [], "signed": edit_document(signed, data.draw)}).encode()
    clear_outcome(verify_manifest, mutate(envelope, data.draw), SIGNER.public_key)
    clear_outcome(verify_manifest, data.draw(st.binary(max_size=200)), SIGNER.public_key)


@FUZZ
@given(value=st.text(max_size=40) | st.sampled_from(["120", "Wed, 21 Oct 2015 07:28:00 GMT", "\u00b2", "\u0663",
                                                     "9" * 400, "9" * 5000, "Wed, 21 Oct 2015 07:28:00 -0000"]))
def test_retry_after_headers(value: str) -> None:
    delay = parse_retry_after(value, 1_700_000_000.0)
    assert delay is None or delay >= 0

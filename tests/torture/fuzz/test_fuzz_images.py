"""Fuzzing the image loader (Intel HEX, Motorola S-record): bytes from outside the car."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.appimage import to_hex
from update_agent.images import FlashImage, load_image

from .fuzzkit import FUZZ, TIMEOUT, clear_outcome, mutate

pytestmark = pytest.mark.timeout(TIMEOUT)

SUFFIX = {"ihex": ".hex", "srec": ".s19"}


def _load(tmp_path: Path, kind: str, data: bytes) -> FlashImage | BaseException:
    path = tmp_path / f"fuzz{SUFFIX[kind]}"
    path.write_bytes(data)
    return clear_outcome(load_image, path)


@FUZZ
@given(kind=st.sampled_from(("ihex", "srec")), data=st.binary(max_size=400))
def test_random_bytes(tmp_path: Path, kind: str, data: bytes) -> None:
    _load(tmp_path, kind, data)


@FUZZ
@given(kind=st.sampled_from(("ihex", "srec")), payload=st.binary(min_size=1, max_size=300),
       address=st.integers(0, 0xFFFF0000), data=st.data())
def test_mutated_valid_images(tmp_path: Path, kind: str, payload: bytes, address: int, data: st.DataObject) -> None:
    text = to_hex(payload, address, fmt=kind).encode()
    loaded = _load(tmp_path, kind, text)
    assert isinstance(loaded, FlashImage), loaded  # the unmutated file loads...
    assert b"".join(s.data for s in loaded.segments) == payload and loaded.segments[0].address == address
    _load(tmp_path, kind, mutate(text, data.draw))  # ...and any edit of it loads or is refused clearly


@FUZZ
@given(kind=st.sampled_from(("ihex", "srec")),
       lines=st.lists(st.text(alphabet="0123456789ABCDEFS:\r\n ", max_size=60), max_size=12))
def test_record_shaped_garbage(tmp_path: Path, kind: str, lines: list[str]) -> None:
    _load(tmp_path, kind, "\n".join(lines).encode())

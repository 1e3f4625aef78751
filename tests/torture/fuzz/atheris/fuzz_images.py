"""atheris: Intel HEX and S-record files into the image loader (update_agent.images)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import atheris

# third-party code is imported before the instrumented block: the project's parsers are the target
import bincopy  # noqa: F401
from _harness import PROJECT, run

with atheris.instrument_imports(include=PROJECT):
    from update_agent.images import load_image


DIR = Path(tempfile.mkdtemp(prefix="fuzz-images-"))


def target(data: bytes) -> None:
    path = DIR / ("f.hex" if data[:1] != b"S" else "f.s19")
    path.write_bytes(data)
    load_image(path)


if __name__ == "__main__":
    run(target)

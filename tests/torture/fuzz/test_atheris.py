"""Each atheris harness (``tests/torture/fuzz/atheris/fuzz_*.py``) runs a small fixed number of inputs.

atheris is in the ``test`` extra for Linux x86_64 only (setup.cfg), where PyPI has binary wheels
(manylinux2014, CPython 3.11 to 3.13): elsewhere pip would build it from source against clang's
libFuzzer, so there it is not installed and these tests skip, saying so. Each harness runs ``RUNS``
inputs from a fixed seed (deterministic; a few seconds each, mostly start-up); a long run is
``python tests/torture/fuzz/atheris/fuzz_images.py -runs=1000000``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

HARNESSES = sorted((Path(__file__).parent / "atheris").glob("fuzz_*.py"))
RUNS = 300

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                       reason="atheris is not installed: the test extra installs it on Linux x86_64 only, "
                              "where a binary wheel exists (elsewhere it needs clang and libFuzzer to build)"),
    pytest.mark.timeout(900),
]


@pytest.mark.parametrize("harness", HARNESSES, ids=[h.stem for h in HARNESSES])
def test_harness_runs_clean(harness: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(harness), f"-runs={RUNS}", "-seed=1", "-max_len=512",
                           f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, f"{harness.name} found a crash:\n{done.stderr[-4000:]}"
    assert f"Done {RUNS} runs" in done.stderr

"""``otactl`` imports only the module of the command it runs; ``--help`` still lists every command."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(*argv: str) -> set[str]:
    code = ("import sys\nfrom agent.cli.main import main\n"
            f"try:\n    main({list(argv)!r})\nexcept BaseException:\n    pass\n"
            "print('\\n'.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"OTA_RUNTIME_DIR": "/nonexistent-runtime", "PATH": "/usr/bin:/bin"})
    return set(out.stdout.split())


def test_a_command_does_not_import_the_others() -> None:
    loaded = _modules_after("--debug", "status")
    assert "agent.cli.status" in loaded
    # the demo pulls in the whole bench (PKI, repository signing libraries): status must not pay for it
    assert not {"agent.cli.demo", "bench.scenario", "agent.cli.flash"} & loaded


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "agent.cli.main", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0
    for command in ("status", "demo", "flash", "update", "history", "bench", "versions"):
        assert f"    {command} " in out.stdout, out.stdout

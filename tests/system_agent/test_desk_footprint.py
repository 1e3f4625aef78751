"""A desk without a bus (``state_source: file``) runs the system agent without python-can and cantools.

Their imports (with what their packages' ``__init__`` drag in: every python-can logger format,
importlib.metadata's entry-point scan, cantools' ARXML/KCD/SYM loaders) are most of the daemon's
memory, so they load in ``start()`` only when the state comes from the buses. A fresh interpreter
is needed: this test process has imported both already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

DESK = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    import yaml
    from agent.runtime.config import load_config
    from system_agent.config import SystemConfig
    from system_agent.daemon import SystemDaemon

    tmp = Path(sys.argv[1])
    (tmp / "state.yaml").write_text("vehicle_speed: 0\\ngear: P\\n")
    (tmp / "stack.yaml").write_text(yaml.safe_dump({"runtime": {"dir": str(tmp)}, "system_agent": {
        "state_source": "file", "state_file": str(tmp / "state.yaml"), "state_dir": str(tmp / "state"),
        "power_hold_file": str(tmp / "hold.json")}}))

    async def main() -> None:
        daemon = SystemDaemon(load_config(SystemConfig, "system_agent", tmp / "stack.yaml"), env={})
        await daemon.start()
        try:
            snapshot = await daemon.snapshot()
        finally:
            await daemon.stop()
        print(sorted(snapshot.values.items()), sorted(m for m in ("can", "cantools") if m in sys.modules))

    asyncio.run(main())
""")


def test_a_desk_with_a_state_file_loads_neither_python_can_nor_cantools(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", DESK, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[('gear', 'P'), ('vehicle_speed', 0)] []"

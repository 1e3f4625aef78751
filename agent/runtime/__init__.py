"""The shared daemon runtime: config, logging, signals, sd_notify, watchdog, lifecycle.

=====================  ==================================================================
module                 does
=====================  ==================================================================
:mod:`.daemon`         ``Daemon``: the base class wiring everything below and the IPC server
:mod:`.config`         ``DaemonConfig`` (a dataclass per daemon) and ``load_config``
:mod:`.logs`           logging setup (journald priority prefixes under systemd)
:mod:`.signals`        SIGTERM/SIGINT -> clean shutdown, SIGHUP -> reload
:mod:`.sdnotify`       sd_notify over ``$NOTIFY_SOCKET`` (READY, STOPPING, STATUS, WATCHDOG)
:mod:`.watchdog`       workers' heartbeats and the ping-only-when-progressing decision
:mod:`.supervisor`     the bench's ``otactl daemons``: start (in order or in parallel), stop, status
:mod:`.keeper`         systemd's part on the bench: notify sockets, WatchdogSec (SIGABRT), Restart=
:mod:`.debug_hang`     bench/test fault hook: SIGUSR2 hangs a daemon (``watchdog.debug_hang``)
=====================  ==================================================================
"""

from agent.runtime.config import DaemonConfig, IpcSettings, load_config, peer_socket
from agent.runtime.daemon import Daemon
from agent.runtime.watchdog import Watchdog, Worker

__all__ = ["Daemon", "DaemonConfig", "IpcSettings", "Watchdog", "Worker", "load_config", "peer_socket"]

"""ota-agent: the engine, the otactl CLI and the shared runtime."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ota-agent-stack")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

"""Per-daemon protocol declarations; :mod:`agent.ipc.protocol` lists them all in one registry."""

"""``otactl bench stack``: the whole bench of :mod:`bench.scenario` in the foreground (see :mod:`bench.stack.cli`)."""

"""ota-hmi-agent: driver consent, progress and result display."""

"""ota-system-agent: vehicle state, preconditions, OTA mode, power hold."""

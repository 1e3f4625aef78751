"""ota-update-agent: UDS over ISO-TP, flash scripts, ECU versions."""

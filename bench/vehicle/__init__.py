"""The bench vehicle simulator: vehicle signals from DBC messages, scripted scenarios, OTA-mode reactions."""

"""The virtual vehicle and backend for bench tests and the demo."""

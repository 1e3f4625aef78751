"""Flash sequences (YAML), one per ECU bootloader family; shipped as package data."""

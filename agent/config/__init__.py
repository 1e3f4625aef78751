"""Typed, validated configuration loaded from YAML."""

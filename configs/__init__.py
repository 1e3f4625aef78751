"""Example and bench configuration; shipped as package data."""

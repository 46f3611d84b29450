"""Stages as plain library functions that take a config: the CLI is a thin layer over these."""

"""The shared consoles follow $COLUMNS at each print, not the value seen when they were made."""

import importlib

from ipvgkit.cli import ui


def test_console_width_follows_columns_at_print_time(monkeypatch):
    monkeypatch.setenv("COLUMNS", "57")
    fresh = importlib.reload(ui)  # the consoles are made while COLUMNS=57 (as in a first command)
    try:
        assert fresh.out.width == 57 and fresh.err.width == 57
        monkeypatch.setenv("COLUMNS", "133")
        assert fresh.out.width == 133 and fresh.err.width == 133
    finally:
        monkeypatch.delenv("COLUMNS")
        importlib.reload(ui)

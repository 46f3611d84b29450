"""Exception types of ipvgkit.

Every error a user can cause or fix is one of these; ``ipvgkit.cli.app.main`` maps them to a
one-line message on stderr and an exit code (1: a check failed or the input data is invalid,
2: the command was used wrongly). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class IpvgError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(IpvgError):
    """The command line or config asks for something impossible (exit 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file or ``--set`` override is malformed or names an unknown key."""


class InputError(IpvgError):
    """An input file or folder is missing, unreadable or malformed."""


class CaseError(InputError):
    """One test-set case is malformed. ``case_key`` names it (JSON key, list position or folder)."""

    def __init__(self, case_key: str, message: str):
        self.case_key = str(case_key)
        self.detail = message
        super().__init__(f"case {self.case_key}: {message}")


class CheckFailed(IpvgError):
    """A validation found problems; ``problems`` lists them, one line each."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        super().__init__(message)


class MediaError(InputError):
    """A video could not be probed, decoded or encoded."""


class MissingDependencyError(IpvgError):
    """An optional package or program is not installed; the message says how to install it."""


class MissingWeightsError(IpvgError):
    """A model file is missing; the message names the file, where it was looked for and where to get it."""

    def __init__(self, filename: str, searched: list[str], source: str):
        self.filename = filename
        self.searched = list(searched)
        self.source = source
        where = ", ".join(self.searched) if self.searched else "nowhere"
        super().__init__(f"missing model file {filename!r} (looked in: {where}); get it from {source}")

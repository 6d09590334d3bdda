"""One exception type for every user-facing failure, and the one place the library speaks to the user.

A MoonError carries a one-line message that names the file / row / column at fault and what to do.
The CLI (``moon_cli/cli.py``) prints it as ``Error: ...`` and exits with status 1 — never a traceback.
The library knows no click: warnings and notes go to stderr through ``warn`` (stdout carries data).
"""

import sys


class MoonError(Exception):
    """A failure caused by the user's input or environment, reported as one line."""

    exit_code = 1

    def __init__(self, message: str):
        self.message = " ".join(str(message).split())  # always one line
        super().__init__(self.message)


def warn(message: str) -> None:
    """A line for the user on stderr (progress notes and warnings; never data)."""
    print(message, file=sys.stderr, flush=True)

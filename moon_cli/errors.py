"""One exception type for every user-facing failure.

A MoonError carries a one-line message that names the file / row / column at fault and what to do.
The CLI prints it as ``Error: ...`` and exits with status 1 — never a traceback.
"""

import click


class MoonError(click.ClickException):
    """A failure caused by the user's input or environment, reported as one line."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line

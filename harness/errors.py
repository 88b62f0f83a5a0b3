"""The one exception the command line turns into a one-line message and exit code 2."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad input from the user (a suite file, a name, a number, a folder).

    The message is one line: what is wrong, and where there is a closed set, the valid choices.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))

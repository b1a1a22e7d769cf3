"""The one base of every error a user can cause and fix, with its advice.

The engine raises them for parameters, pictures, weights and memory; the service adds its
own (sidecars, refused files, configuration, submissions). Every door shows the message and
`hint` alike: the job's `error.txt`, the CLI's one line, the web page.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something a user gave that cannot be used; `hint` says how to fix it."""

    default_hint = "check the inputs and parameters and submit again"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint or self.default_hint


def advice(error: BaseException) -> str:
    """The advice an error was raised with, or the general one for anything else."""
    return error.hint if isinstance(error, UserError) else UserError.default_hint

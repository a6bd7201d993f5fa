"""The one base class of every error a command turns into one line and an exit status.

A leaf: it imports nothing of the package, so the command line catches every refusal
without importing the modules that raise them (a `train` imports no HTTP server).
"""

from __future__ import annotations

EXIT_FAILED = 1
EXIT_USAGE = 2


class TensorGuessError(Exception):
    """A refusal or a failure whose message, one line, says what happened and what to do.

    The command line prints `tensor-guess: MESSAGE` and exits with `exit_status`.
    """

    exit_status = EXIT_FAILED


class UsageError(TensorGuessError):
    """The arguments cannot be used as given (a missing folder, a value out of range)."""

    exit_status = EXIT_USAGE

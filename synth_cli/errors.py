"""The exceptions every layer raises and `app.py` turns into one-line messages.

Core modules (`tracing`, `dataset`, `api`) raise these and never print; the root
command group catches them once and renders `error:` + optional `hint:` on stderr
with the exit code the exception carries.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class SynthError(Exception):
    """A failure with a message meant for the user (exit 1 unless told otherwise)."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class UsageError(SynthError):
    """The command line itself is wrong: bad flag value, bad combination (exit 2)."""

    exit_code = EXIT_USAGE


class TraceStoreError(SynthError):
    """A trace database cannot be opened or read."""


class DatasetError(SynthError):
    """A dataset file or filter configuration is unusable."""

"""The one exception tree of capdisc.

Every error a user can cause or meet derives from :class:`CapdiscError`; the CLI
catches only that base class and prints one line (plus an optional hint) to
stderr with the matching exit code. Anything else is a bug and keeps its traceback.

    CapdiscError                    exit 4 unless a subclass says otherwise
    ├── UsageError                  exit 2: a flag or value is wrong
    │   └── ProfileError            exit 2: a profile file or field is wrong
    ├── TargetUnreachable           exit 3: preflight failed, no load was sent
    ├── OutputError                 exit 2: the run directory cannot be written
    └── RunFailed                   exit 4: the run produced no result
"""

from __future__ import annotations

__all__ = [
    "CapdiscError",
    "OutputError",
    "ProfileError",
    "RunFailed",
    "TargetUnreachable",
    "UsageError",
]


class CapdiscError(Exception):
    """Base of every error capdisc reports to a user as one line."""

    exit_code = 4

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CapdiscError):
    """A command-line flag or value is invalid; the message names it."""

    exit_code = 2


class ProfileError(UsageError):
    """A profile cannot be found or fails validation; the message names file and field."""


class OutputError(CapdiscError):
    """The output directory cannot be created or written."""

    exit_code = 2


class TargetUnreachable(CapdiscError):
    """The target failed its preflight check; no load was sent."""

    exit_code = 3


class RunFailed(CapdiscError):
    """The run could not produce a result (for example, no step completed)."""

    exit_code = 4

"""The exception hierarchy: every error says what is wrong, where, and what to do."""

from __future__ import annotations

from collections.abc import Iterable


class WheelbarrowError(Exception):
    """Base of every error wheelbarrow raises on purpose.

    ``hint`` is one line telling the user what to do next; the CLI prints it
    after the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(WheelbarrowError):
    """An input file of the app (requirements, pyproject, lock) is malformed."""

    exit_code = 2


class RequirementsError(InputError):
    """One or more lines of a requirements file could not be read.

    ``problems`` holds every ``file:line: message`` found, not only the first.
    """

    def __init__(self, problems: Iterable[str], *, hint: str | None = None) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems), hint=hint)


class TargetError(InputError):
    """A Python version or platform that wheelbarrow cannot target."""


class LockError(WheelbarrowError):
    """The resolver could not lock the requirements (unknown package, no version, ...)."""


class NoCompatibleWheelError(WheelbarrowError):
    """Some locked packages have no wheel for the target."""

    def __init__(self, packages: Iterable[str], *, target: str) -> None:
        self.packages = tuple(packages)
        listing = "\n".join(f"  - {p}" for p in self.packages)
        super().__init__(
            f"{len(self.packages)} package(s) have no compatible wheel for {target}:\n{listing}",
            hint="pick versions that publish wheels for this target, or change --python/--platform",
        )


class FetchError(WheelbarrowError):
    """A download failed or its content did not match the lock."""


class HashMismatchError(FetchError):
    """A downloaded file's hash differs from the one in the lock."""


class StoreError(WheelbarrowError):
    """The content-addressed store is missing something or is inconsistent."""


class InstallError(WheelbarrowError):
    """An environment could not be created from the wheelhouse."""


class ToolError(WheelbarrowError):
    """An external tool (uv, python) failed or is missing."""

"""The exception hierarchy: every error says what is wrong, where, and what to do."""

from __future__ import annotations

from collections.abc import Iterable

from wheelbarrow._core.text import agree, plural


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


def error_text(message: str, hint: str | None) -> str:
    """``error: <first line>``, the further lines indented, then ``hint: ...``: how every
    command line front end (the CLI, the buildpacks' entry points) shows an error."""
    lines = message.splitlines() or [""]
    text = f"error: {lines[0]}\n" + "".join(f"  {line}\n" for line in lines[1:])
    return text + (f"hint: {hint}\n" if hint else "")


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
            f"{plural(len(self.packages), 'package')} {agree(len(self.packages), 'has', 'have')} "
            f"no compatible wheel for {target}:\n{listing}",
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


class EnvironmentEditedError(StoreError):
    """A stored environment no longer matches its seal (a file changed, went or was added)."""


class MalformedWheelError(WheelbarrowError):
    """A wheel is not what a wheel must be: not a zip, RECORD hashes that differ, a wrong name.

    ``path`` is the file checked.
    """

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "the wheel is malformed: report it to its maintainers, or pin another version",
        )
        self.path = path


class ToolError(WheelbarrowError):
    """An external tool (uv, python) failed or is missing."""


class BuildGraphError(InputError):
    """The source builds to run do not form a valid graph (unknown or duplicate package)."""


class BuildCycleError(BuildGraphError):
    """Source builds need each other, so none of them can be built first.

    ``cycles`` holds each cycle as the keys in the order they need each other.
    """

    def __init__(
        self, cycles: Iterable[Iterable[str]], *, labels: dict[str, str] | None = None
    ) -> None:
        self.cycles = tuple(tuple(cycle) for cycle in cycles)
        names = labels or {}
        listing = "\n".join(
            "  - " + " -> ".join(names.get(key, key) for key in (*cycle, cycle[0]))
            for cycle in self.cycles
        )
        super().__init__(
            f"{plural(len(self.cycles), 'cycle')} among the source builds; "
            f"none of their members can be built first:\n{listing}",
            hint="break each cycle by providing a wheel for one of its members "
            "(e.g. drop --no-binary for it)",
        )


class RepairError(WheelbarrowError):
    """A wheel built from source could not be made portable (auditwheel, glibc, arch)."""


class ArchiveError(InputError):
    """A source archive cannot be read: corrupt, truncated, or neither tar nor zip."""


class UnsafeArchiveError(ArchiveError):
    """A source archive or tree holds a member that escapes its root, a special file, or too much.

    ``member`` is the offending member's name as stored (empty for whole-archive limits).
    """

    def __init__(self, message: str, *, member: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.member = member


class PatchError(InputError):
    """A patch given for a source build does not apply to its source tree."""


class SystemRequirementError(WheelbarrowError):
    """This machine lacks programs, libraries or headers that a source build needs.

    ``missing`` holds each missing requirement as written (``gfortran``, ``lib:openblas``);
    ``packages`` the Debian packages that provide those it knows.
    """

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[str] = (),
        packages: Iterable[str] = (),
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.missing = tuple(missing)
        self.packages = tuple(packages)


class SourceBuildError(WheelbarrowError):
    """One or more source builds failed; the message names each with its log."""


class PythonRuntimeError(WheelbarrowError):
    """The app's Python cannot be provided on the platform (none configured, none on the stack)."""


class UnsupportedPythonError(PythonRuntimeError, TargetError):
    """The app asks for a Python version the platform runtimes do not cover."""

    exit_code = 2


class BuildpackError(WheelbarrowError):
    """The Cloud Native Buildpack contract was misused: a bad layer name, process or env file."""


class ImageReferenceError(InputError):
    """An image reference (``registry/repository:tag@digest``) is malformed."""


class RegistryError(WheelbarrowError):
    """A container registry could not be reached, or refused or failed a request."""


class RegistryAuthError(RegistryError):
    """A container registry refused the credentials given, or asked for some and had none."""


class ImageNotFoundError(RegistryError):
    """A container registry has no such image, tag or manifest digest."""


class ImageError(WheelbarrowError):
    """An OCI image could not be read or written: a missing ref or blob, a digest that differs."""


class ImageFormatError(ImageError):
    """An image document (index, manifest, config) or layer entry is malformed or unsupported."""

    exit_code = 2


class BlobNotFoundError(ImageError):
    """An image's blob (a layer, config or manifest) is in none of the places given.

    ``digest`` is the blob's digest.
    """

    def __init__(self, message: str, *, digest: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.digest = digest

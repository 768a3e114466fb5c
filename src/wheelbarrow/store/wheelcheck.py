"""A wheel checked as it enters the store or a wheelhouse: a zip, true to its RECORD and name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import MalformedWheelError

if TYPE_CHECKING:
    from email.message import Message

    from packaging.utils import NormalizedName
    from packaging.version import Version


def is_wheel(filename: str) -> bool:
    """Whether ``filename`` names a wheel (the other files of the store are sdists)."""
    return filename.endswith(".whl")


def check_wheel(path: Path, *, filename: str | None = None) -> None:
    """Raise :class:`MalformedWheelError` unless ``path`` is a sound wheel called ``filename``.

    Sound means: a zip archive with one ``.dist-info`` directory whose RECORD
    lists every member with the hash and size it has, and whose METADATA gives
    the name and version of the file name. ``filename`` defaults to the path's
    name (files entering the store are checked under a temporary name).
    Reading errors other than the archive's own (a full or failing disk)
    propagate as they are.
    """
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    filename = filename or path.name
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise MalformedWheelError(
            f"{filename}: not a wheel file name: {exc}", path=filename
        ) from exc
    metadata = _checked_metadata(path, filename)
    _check_name_and_version(filename, name, version, metadata)


def _checked_metadata(path: Path, filename: str) -> Message:
    """The METADATA of the wheel at ``path``, once its RECORD is checked against its contents."""
    import zipfile  # here, not at the top: the store imports this module on every command
    import zlib
    from email.parser import HeaderParser

    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.filename = filename  # installer parses the name; a scratch file has none
            source = WheelFile(archive)
            try:
                source.validate_record(validate_contents=True)
            except source.validation_error as exc:
                issues = [
                    str(issue).removeprefix(f"In {filename}, ")
                    for issue in getattr(exc, "issues", [exc])
                ]
                shown = "\n".join(f"  - {issue}" for issue in issues[:10])
                more = f"\n  - and {len(issues) - 10} more" if len(issues) > 10 else ""
                raise MalformedWheelError(
                    f"{filename}: its RECORD does not match its contents:\n{shown}{more}",
                    path=filename,
                ) from exc
            return HeaderParser().parsestr(source.read_dist_info("METADATA"))
    except zipfile.BadZipFile as exc:
        raise MalformedWheelError(f"{filename}: not a zip archive ({exc})", path=filename) from exc
    except (InstallerError, KeyError, UnicodeDecodeError, zlib.error, EOFError) as exc:
        raise MalformedWheelError(
            f"{filename}: cannot be read as a wheel: {type(exc).__name__}: {exc}", path=filename
        ) from exc


def _check_name_and_version(
    filename: str, name: NormalizedName, version: Version, metadata: Message
) -> None:
    """Raise unless METADATA's Name and Version are those of the file name."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    meta_name, meta_version = metadata.get("Name"), metadata.get("Version")
    if not meta_name or not meta_version:
        raise MalformedWheelError(
            f"{filename}: its METADATA gives no Name or no Version", path=filename
        )
    try:
        parsed = Version(meta_version)
    except InvalidVersion as exc:
        raise MalformedWheelError(
            f"{filename}: its METADATA gives an invalid version {meta_version!r}", path=filename
        ) from exc
    if parsed != version:
        raise MalformedWheelError(
            f"{filename}: the file name says version {version}, its METADATA says {meta_version}",
            path=filename,
        )
    if canonicalize_name(meta_name) != name:
        raise MalformedWheelError(
            f"{filename}: the file name says {name}, its METADATA says {meta_name}",
            path=filename,
        )

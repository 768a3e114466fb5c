"""What ``install`` did, as the CLI renders it (light: a warm install imports nothing more)."""

from __future__ import annotations

from wheelbarrow._core.text import plural
from wheelbarrow._core.tuples import NamedTuple

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    InstallStatus = Literal["up-to-date", "cloned", "built-and-cloned"]
    Layout = Literal["shared", "hardlink", "copy"]


class InstallReport(NamedTuple):
    """What ``install`` did: where, from which stored environment, and how.

    ``status`` says whether the stored environment was made now (``built-and-cloned``),
    only used (``cloned``, whatever the layout) or nothing had to change (``up-to-date``).
    """

    path: str
    env_key: str
    status: InstallStatus
    layout: Layout
    python: str
    python_version: str
    packages: int
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        """The versioned machine-readable form (``--json``)."""
        return {
            "version": 1,
            "environment": self.path,
            "env_key": self.env_key,
            "status": self.status,
            "layout": self.layout,
            "python": self.python,
            "python_version": self.python_version,
            "packages": self.packages,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """The line ``install`` prints."""
        verb = {
            "up-to-date": "is up to date",
            "cloned": "installed from the store",
            "built-and-cloned": "built and installed",
        }[self.status]
        return (
            f"Environment {self.path} {verb}: {plural(self.packages, 'package')}, "
            f"Python {self.python_version}, "
            f"in {self.seconds:.2f}s"
        )

"""The warm ``install``'s command line, read without argparse.

``wheelbarrow install APP --into DIR`` is run on every deploy, and its answer, when nothing
changed, is a few small files (cli/install_record.py): building argparse's parser and
importing it (with gettext and locale) took a fifth of that. So the plain forms of the
``install`` command line are read here, into the same namespace argparse gives: the same
names, the same defaults (tests/cli/test_quickparse.py holds the two to each other, for
every form this accepts). Anything else, including every mistake, help and each form
argparse reads in a way of its own (abbreviations, ``--``, a value that starts with ``-``,
bundled short flags), gives None, and the caller parses it with argparse, which explains.
"""

from __future__ import annotations

from types import SimpleNamespace

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

# What install's argparse parser gives for what the command line leaves out
# (cli/arguments.py: common_options(index=False), then install's own).
INSTALL_DEFAULTS: dict[str, object] = {
    "command": "install",
    "app": ".",
    "python": None,
    "platform": None,
    "store": None,
    "json": False,
    "quiet": False,
    "dev": False,
    "group": [],
    "extra": [],
    "into": None,
    "python_executable": None,
    "link_mode": "shared",
}
_FLAGS = {"--json": "json", "-q": "quiet", "--quiet": "quiet", "--dev": "dev"}
_VALUES = {
    "--python": "python",
    "--platform": "platform",
    "--store": "store",
    "--into": "into",
    "--python-executable": "python_executable",
    "--link-mode": "link_mode",
}
_APPENDED = {"--group": "group", "--extra": "extra"}
_CHOICES = {"link_mode": ("shared", "hardlink", "copy")}


def parse(argv: Sequence[str]) -> argparse.Namespace | None:
    """The namespace argparse would give for ``argv``, when it is a plain ``install``
    command line that argparse accepts; else None."""
    if not argv or argv[0] != "install":
        return None
    found = dict(INSTALL_DEFAULTS)
    appended: dict[str, list[str]] = {name: [] for name in _APPENDED.values()}
    app: str | None = None
    words = iter(argv[1:])
    for word in words:
        if not word.startswith("-"):
            if app is not None:
                return None  # a second positional: argparse's error
            app = word
            continue
        option, given, value = word.partition("=")
        if option in _FLAGS and not given:
            found[_FLAGS[option]] = True
            continue
        name = _VALUES.get(option) or _APPENDED.get(option)
        if name is None:
            return None  # unknown, abbreviated, bundled, help, `--`: argparse's to read
        if not given:
            value = next(words, "-")
            if value.startswith("-"):
                return None  # no value, or one argparse may take for an option
        if value not in _CHOICES.get(name, (value,)):
            return None
        if option in _APPENDED:
            appended[name].append(value)
        else:
            found[name] = value
    if found["into"] is None:
        return None  # required: argparse says so
    if app is not None:
        found["app"] = app
    found.update(appended)
    # argparse's Namespace is a SimpleNamespace in all that its readers use (attributes and
    # vars()); importing argparse for its class would cost what this saves.
    return SimpleNamespace(**found)  # type: ignore[return-value]

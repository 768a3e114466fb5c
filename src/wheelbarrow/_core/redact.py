"""Removing secrets from text before anyone sees it: credentials in URLs, and known passwords."""

from __future__ import annotations

import _thread
import re
import urllib.parse
from collections.abc import Iterable

MASK = "****"
# Shorter values are left alone: masking every "ab" in every message would garble
# the output and protect nothing anyone could not guess.
MIN_SECRET = 4

# scheme://userinfo@ — userinfo runs to the last "@" before the host ends. Quotes,
# brackets and spaces end it too, so text after a URL without a path is never eaten.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s\"'<>]*)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match["userinfo"].partition(":")
    # As pip does: a lone user name is often a token, so it is masked; beside a
    # password it is kept, which tells people which account was used.
    kept = f"{user}:{MASK}" if sep else MASK
    return f"{match['scheme']}{kept}@"


def redact_urls(text: str) -> str:
    """``https://user:secret@host/`` becomes ``https://user:****@host/``; ``https://tok@host/``
    becomes ``https://****@host/``.

    >>> redact_urls("GET http://alice:hunter22@example.org/simple/ failed")
    'GET http://alice:****@example.org/simple/ failed'
    """
    return _USERINFO.sub(_mask_userinfo, text)


def strip_credentials(text: str) -> str:
    """Every URL in ``text`` without its ``user:password@`` part, for files that are kept.

    >>> strip_credentials('url = "https://alice:hunter22@example.org/a.whl"')
    'url = "https://example.org/a.whl"'
    """
    return _USERINFO.sub(lambda m: m["scheme"], text)


class Secrets:
    """Values that must never be printed (passwords from netrc, the environment, index URLs).

    Thread-safe. :meth:`redact` masks every registered value, raw or
    percent-encoded, and every URL's credentials.
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._values: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        """Register values to mask from now on (those under :data:`MIN_SECRET` are ignored)."""
        with self._lock:
            known = set(self._values)
            for value in values:
                if len(value) >= MIN_SECRET:
                    known.add(value)
                    known.add(urllib.parse.quote(value, safe=""))
            # Longest first, so a secret containing another is masked whole.
            self._values = tuple(sorted(known, key=len, reverse=True))

    def redact(self, text: str) -> str:
        """``text`` with URL credentials and every registered value masked."""
        text = redact_urls(text)
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text


# The output boundaries (the CLI's rendering, the buildpack's log) are reached from
# everywhere, also before any credentials object exists; one registry for the
# process lets each of them mask what any part of the run has learnt is secret.
SECRETS = Secrets()


def remember(values: Iterable[str]) -> None:
    """Register secrets with the process's registry (see :data:`SECRETS`)."""
    SECRETS.add(values)


def redact(text: str) -> str:
    """``text`` safe to print: URL credentials and remembered secrets masked."""
    return SECRETS.redact(text)


def redact_data(value: object) -> object:
    """A JSON-like value with every string in it redacted (keys included)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value

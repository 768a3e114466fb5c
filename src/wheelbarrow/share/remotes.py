"""Choosing the remote store's implementation by its URL's scheme."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from wheelbarrow._core.redact import redact_urls
from wheelbarrow.store.remote import REMOTE_ENV_VAR, RemoteError, RemoteStore

__all__ = ["remote_for", "remote_from"]


def remote_for(url: str, environ: Mapping[str, str]) -> RemoteStore:
    """The remote store at ``url`` (``s3://BUCKET/PREFIX``); another scheme is an error."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "s3":
        from wheelbarrow.share.s3 import S3Remote

        return S3Remote(url, environ=environ)
    named = f"{scheme}://" if scheme else "(none)"
    raise RemoteError(
        f"remote store {redact_urls(url)!r}: unknown scheme {named}",
        hint="write it as s3://BUCKET/PREFIX (an S3 or S3-compatible bucket)",
    )


def remote_from(given: str | None, environ: Mapping[str, str]) -> RemoteStore | None:
    """The remote from ``--remote``, else ``$WHEELBARROW_REMOTE``, else None."""
    url = given or environ.get(REMOTE_ENV_VAR)
    return remote_for(url, environ) if url else None

"""Choosing the remote store's implementation by its URL's scheme."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from wheelbarrow._core.redact import redact_urls
from wheelbarrow.store.remote import REMOTE_ENV_VAR, RemoteError, RemoteStore

__all__ = ["remote_for", "remote_from"]


def remote_for(url: str, environ: Mapping[str, str]) -> RemoteStore:
    """The remote store at ``url`` (``s3://BUCKET/PREFIX`` or ``oci://REGISTRY/REPOSITORY``);
    another scheme is an error."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "s3":
        from wheelbarrow.share.s3 import S3Remote

        return S3Remote(url, environ=environ)
    if scheme == "oci":
        from wheelbarrow.share.oci.remote import OciRemote

        home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
        return OciRemote(url, environ=environ, home=home)
    named = f"{scheme}://" if scheme else "(none)"
    raise RemoteError(
        f"remote store {redact_urls(url)!r}: unknown scheme {named}",
        hint="write it as s3://BUCKET/PREFIX (an S3 or S3-compatible bucket) or "
        "oci://REGISTRY/REPOSITORY (a repository of an OCI registry)",
    )


def remote_from(given: str | None, environ: Mapping[str, str]) -> RemoteStore | None:
    """The remote from ``--remote``, else ``$WHEELBARROW_REMOTE``, else None."""
    url = given or environ.get(REMOTE_ENV_VAR)
    return remote_for(url, environ) if url else None

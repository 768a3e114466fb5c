"""Registry credentials, read from the auth files podman, skopeo and docker write."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import RegistryAuthError
from wheelbarrow.share.oci.reference import (
    DEFAULT_REGISTRY,
    DEFAULT_REGISTRY_API_HOST,
    LEGACY_DEFAULT_REGISTRY,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """A user name and password for one registry, and the auth file they came from."""

    username: str
    password: str = field(repr=False)
    source: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSource:
    """The auth files to look credentials up in, in order: the first file with an entry wins.

    Both formats are read: containers-auth.json (podman, skopeo, buildah) and
    docker's ``config.json``, whose ``auths`` map keys (``host``,
    ``host/namespace``, ``https://host/v1/``) to ``{"auth": base64("user:pass")}``
    or to ``username``/``password``. Within a file the most specific key wins
    (``host/ns/repo`` over ``host``). Credential helpers (``credsStore``,
    ``credHelpers``) are not run.
    """

    files: tuple[Path, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], home: Path) -> AuthSource:
        """The files podman and skopeo read, given their environment and home directory.

        ``$REGISTRY_AUTH_FILE`` alone when it is set; otherwise
        ``$XDG_RUNTIME_DIR/containers/auth.json``,
        ``${XDG_CONFIG_HOME:-~/.config}/containers/auth.json`` and
        ``${DOCKER_CONFIG:-~/.docker}/config.json``.
        """
        if environ.get("REGISTRY_AUTH_FILE"):
            return cls(files=(Path(environ["REGISTRY_AUTH_FILE"]),))
        files: list[Path] = []
        if environ.get("XDG_RUNTIME_DIR"):
            files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
        config_home = (
            Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
        )
        files.append(config_home / "containers" / "auth.json")
        docker = (
            Path(environ["DOCKER_CONFIG"]) if environ.get("DOCKER_CONFIG") else home / ".docker"
        )
        files.append(docker / "config.json")
        return cls(files=tuple(files))

    def find(self, registry: str, repository: str = "") -> Credentials | None:
        """The credentials for ``registry`` (and ``repository`` in it), or None."""
        parts = repository.split("/") if repository else []
        keys = [f"{registry}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
        keys.append(registry)
        for path in self.files:
            entries = _read_auth_file(path)
            for key in keys:
                entry = entries.get(key)
                if entry is not None:
                    found = _credentials(entry, key=key, source=path)
                    if found is not None:
                        return found
        return None

    def describe(self) -> str:
        """The files this source reads, for error messages: ``a.json, b.json (missing)``."""
        if not self.files:
            return "no auth file"
        return ", ".join(f"{p}" if p.is_file() else f"{p} (missing)" for p in self.files)


def _read_auth_file(path: Path) -> dict[str, Mapping[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        raise RegistryAuthError(
            f"cannot read the auth file {path}: {exc.strerror or exc}",
            hint="fix its permissions, or point REGISTRY_AUTH_FILE at another file",
        ) from exc
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise RegistryAuthError(
            f"the auth file {path} is not valid JSON (line {exc.lineno}: {exc.msg})",
            hint="log in again (podman login) to rewrite it, or fix it by hand",
        ) from exc
    auths = data.get("auths", {}) if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise RegistryAuthError(
            f"the auth file {path} has no 'auths' object",
            hint='it should look like {"auths": {"HOST": {"auth": "BASE64(user:password)"}}}',
        )
    return {_normalise_key(k): v for k, v in auths.items() if isinstance(v, dict)}


def _normalise_key(key: str) -> str:
    """``https://index.docker.io/v1/`` → ``docker.io``; ``host/ns/`` → ``host/ns``."""
    text = key.strip()
    had_scheme = text.startswith(("https://", "http://"))
    if had_scheme:
        text = text.split("://", 1)[1]
    text = text.rstrip("/")
    if had_scheme:
        text = re.sub(r"/v[12]$", "", text)
    host, sep, path = text.partition("/")
    if host in (LEGACY_DEFAULT_REGISTRY, DEFAULT_REGISTRY_API_HOST):
        host = DEFAULT_REGISTRY
    return host + sep + path


def _credentials(entry: Mapping[str, Any], *, key: str, source: Path) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RegistryAuthError(
                f"the auth file {source} has an 'auth' for {key} that is not base64 of "
                "user:password",
                hint=f"log in again (podman login {key.partition('/')[0]})",
            ) from exc
        username, colon, password = decoded.partition(":")
        if not colon:
            raise RegistryAuthError(
                f"the auth file {source} has an 'auth' for {key} without a ':' "
                "between user and password",
                hint=f"log in again (podman login {key.partition('/')[0]})",
            )
        return Credentials(username=username, password=password, source=source)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(username=user, password=secret, source=source)
    return None

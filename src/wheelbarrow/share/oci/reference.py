"""Image references (``registry/repository:tag@digest``), parsed and normalised."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass

from wheelbarrow._core.errors import ImageReferenceError

# Docker Hub's name, as references spell it. Its API host and the legacy name
# that old references and docker's config.json use are derived from it.
DEFAULT_REGISTRY = "docker.io"
DEFAULT_REGISTRY_API_HOST = "registry-1." + DEFAULT_REGISTRY
LEGACY_DEFAULT_REGISTRY = "index." + DEFAULT_REGISTRY
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

# The grammar of distribution/reference (the one docker, podman and skopeo share).
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_REGISTRY = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"(?P<algorithm>[a-z0-9]+(?:[+._-][a-z0-9]+)*):(?P<hex>[0-9a-f]+)")
# The algorithms a client can verify, with their hex length.
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_MAX_NAME = 255
_LOOPBACK_NAMES = {"localhost", "[::1]"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageReference:
    """One image in one registry: by tag, by digest, or both (the digest then decides).

    Build it with :meth:`parse`; the constructor checks every field as well.
    ``registry`` is the host as references spell it, with its port
    (``127.0.0.1:5000``, ``docker.io``); ``repository`` the full path
    (``library/python``).
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        _check_registry(self.registry, text=self._text())
        _check_repository(self.repository, text=self._text())
        if self.tag is not None:
            _check_tag(self.tag, text=self._text())
        if self.digest is not None:
            check_digest(self.digest, text=self._text())
        if self.tag is None and self.digest is None:
            raise ImageReferenceError(
                f"invalid image reference {self._text()!r}: it has neither a tag nor a digest",
                hint=f"add a tag (:{DEFAULT_TAG}) or a digest (@sha256:...)",
            )

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``text`` the way docker and podman do, filling in Docker Hub's defaults.

        ``python`` becomes ``docker.io/library/python:latest``; the first path
        component is a registry when it has a dot or a port, or is ``localhost``.

        >>> str(ImageReference.parse("127.0.0.1:5000/app:v1"))
        '127.0.0.1:5000/app:v1'
        """
        if not text or text != text.strip() or any(c.isspace() for c in text):
            raise ImageReferenceError(
                f"invalid image reference {text!r}: it is empty or has whitespace",
                hint="write it as [REGISTRY/]REPOSITORY[:TAG][@DIGEST]",
            )
        name, at, digest = text.partition("@")
        if at and not digest:
            raise ImageReferenceError(
                f"invalid image reference {text!r}: the digest after '@' is empty",
                hint="write a digest as sha256:<64 hex digits>",
            )
        slash = name.rfind("/")
        colon = name.rfind(":")
        tag: str | None = None
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not tag:
                raise ImageReferenceError(
                    f"invalid image reference {text!r}: the tag after ':' is empty",
                    hint=f"give a tag (:{DEFAULT_TAG}) or leave out the ':'",
                )
        first, sep, rest = name.partition("/")
        # Unlike docker, an uppercase first component is a namespace, not a host: the
        # error then says "uppercase" instead of failing to reach a host "MyOrg".
        if sep and ("." in first or ":" in first or first == "localhost"):
            registry, repository = first, rest
        else:
            registry, repository = DEFAULT_REGISTRY, name
        if registry == LEGACY_DEFAULT_REGISTRY:
            registry = DEFAULT_REGISTRY
        if registry == DEFAULT_REGISTRY and "/" not in repository:
            repository = f"{DEFAULT_NAMESPACE}/{repository}"
        if tag is None and not digest:
            tag = DEFAULT_TAG
        # Check here, with the text as written, so the error quotes what the user typed.
        _check_registry(registry, text=text)
        _check_repository(repository, text=text)
        if tag is not None:
            _check_tag(tag, text=text)
        if digest:
            check_digest(digest, text=text)
        return cls(registry=registry, repository=repository, tag=tag, digest=digest or None)

    def __str__(self) -> str:
        return self._text()

    def _text(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str:
        """What follows ``/manifests/`` in the API: the digest when there is one, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def host(self) -> str:
        """The registry's host without its port (``127.0.0.1``, ``[::1]``, ``localhost``)."""
        if self.registry.startswith("["):
            return self.registry[: self.registry.index("]") + 1]
        return self.registry.partition(":")[0]

    @property
    def plain_http(self) -> bool:
        """Whether the registry is spoken to over plain http: only on loopback."""
        return is_loopback(self.host)

    @property
    def api_base(self) -> str:
        """The registry's API root, ending in ``/v2``: https, or http on loopback.

        >>> ImageReference.parse("localhost:5000/app").api_base
        'http://localhost:5000/v2'
        """
        host = DEFAULT_REGISTRY_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry
        scheme = "http" if self.plain_http else "https"
        return f"{scheme}://{host}/v2"

    def with_tag(self, tag: str) -> ImageReference:
        """The same repository at ``tag``, without a digest (it would pin another image)."""
        return dataclasses.replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> ImageReference:
        """The same repository pinned to ``digest``; the tag stays, for display."""
        return dataclasses.replace(self, digest=digest)


def is_loopback(host: str) -> bool:
    """``localhost``, ``[::1]`` and 127.0.0.0/8: the hosts a registry may speak plain http on."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_digest(digest: str, *, text: str | None = None) -> str:
    """Return ``digest`` when it is ``sha256:<64 hex>`` or ``sha512:<128 hex>``, else raise."""
    where = f"invalid image reference {text!r}" if text is not None else "invalid digest"
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise ImageReferenceError(
            f"{where}: {digest!r} is not a digest (ALGORITHM:HEX, lowercase)",
            hint="write a digest as sha256:<64 lowercase hex digits>",
        )
    algorithm, hexpart = match["algorithm"], match["hex"]
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise ImageReferenceError(
            f"{where}: the digest algorithm {algorithm!r} is not supported "
            f"(only {', '.join(DIGEST_HEX_LENGTHS)})",
            hint="use a sha256 digest",
        )
    if len(hexpart) != length:
        raise ImageReferenceError(
            f"{where}: a {algorithm} digest has {length} hex digits, {digest!r} has {len(hexpart)}",
            hint="copy the whole digest",
        )
    return digest


def _check_registry(registry: str, *, text: str) -> None:
    if not _REGISTRY.fullmatch(registry):
        raise ImageReferenceError(
            f"invalid image reference {text!r}: {registry!r} is not a registry host[:port]",
            hint="write the registry as host, host:port or [ipv6]:port",
        )


def _check_repository(repository: str, *, text: str) -> None:
    if not repository:
        raise ImageReferenceError(
            f"invalid image reference {text!r}: the repository name is empty",
            hint="write it as [REGISTRY/]REPOSITORY[:TAG][@DIGEST]",
        )
    if repository.lower() != repository:
        raise ImageReferenceError(
            f"invalid image reference {text!r}: the repository {repository!r} "
            "has uppercase letters",
            hint=f"repository names are lowercase: {repository.lower()!r}",
        )
    bad = [c for c in repository.split("/") if not _PATH_COMPONENT.fullmatch(c)]
    if bad:
        raise ImageReferenceError(
            f"invalid image reference {text!r}: {bad[0]!r} is not a valid repository "
            "path component",
            hint="components are lowercase letters and digits, separated by '.', '_', '__' or '-'",
        )
    if len(repository) > _MAX_NAME:
        raise ImageReferenceError(
            f"invalid image reference {text!r}: the repository name is longer than "
            f"{_MAX_NAME} characters",
        )


def _check_tag(tag: str, *, text: str) -> None:
    if not tag:
        raise ImageReferenceError(
            f"invalid image reference {text!r}: the tag is empty",
            hint=f"give a tag (:{DEFAULT_TAG}) or leave out the ':'",
        )
    if not _TAG.fullmatch(tag):
        raise ImageReferenceError(
            f"invalid image reference {text!r}: {tag!r} is not a valid tag",
            hint="a tag is up to 128 letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'",
        )

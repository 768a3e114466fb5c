"""The image documents: descriptors, manifests, indexes and configs, read and written."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wheelbarrow._core.errors import ImageFormatError, ImageReferenceError
from wheelbarrow.share.oci.mediatypes import (
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from wheelbarrow.share.oci.reference import check_digest


# Not _core.digests.json_sha256: these bytes are the document itself (its digest is
# their sha256), and they keep non-ASCII text as UTF-8 (ensure_ascii=False).
def canonical_json(value: Any) -> bytes:
    """``value`` as compact JSON with sorted keys: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def epoch_timestamp(seconds: int) -> str:
    """The RFC 3339 UTC time of ``seconds`` since the epoch, as image configs write it."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """What an image runs on: ``amd64``/``linux``, with an optional variant (``v8``)."""

    architecture: str
    os: str
    variant: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {**self.extra, "architecture": self.architecture, "os": self.os}
        if self.variant:
            data["variant"] = self.variant
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> Platform:
        doc = _object(data, where)
        return cls(
            architecture=_str(doc, "architecture", where),
            os=_str(doc, "os", where),
            variant=_opt_str(doc, "variant", where),
            extra=_rest(doc, "architecture", "os", "variant"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    """A reference to a blob: its media type, digest and size (OCI image-spec descriptor.md).

    Fields this model does not know (``urls``, ``data``, ``artifactType``) are kept
    in ``extra`` and written back, so a base image's descriptors pass through untouched.
    """

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"descriptor {self.digest!r}"
        if not self.media_type:
            raise ImageFormatError(f"{where} has no media type")
        check_document_digest(self.digest, where=where)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ImageFormatError(f"{where} has a bad size {self.size!r}")

    @classmethod
    def of(cls, data: bytes, media_type: str) -> Descriptor:
        """The descriptor of the blob ``data``."""
        return cls(media_type=media_type, digest=sha256_digest(data), size=len(data))

    def to_dict(self) -> dict[str, Any]:
        data = {
            **self.extra,
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        if self.platform is not None:
            data["platform"] = self.platform.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> Descriptor:
        doc = _object(data, where)
        size = doc.get("size")
        if isinstance(size, bool) or not isinstance(size, int):
            raise ImageFormatError(f"{where}: 'size' must be an integer, not {size!r}")
        platform = doc.get("platform")
        return cls(
            media_type=_str(doc, "mediaType", where),
            digest=_str(doc, "digest", where),
            size=size,
            annotations=_str_map(doc, "annotations", where),
            platform=None if platform is None else Platform.from_dict(platform, where=where),
            extra=_rest(doc, "mediaType", "digest", "size", "annotations", "platform"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """An image manifest: OCI (``application/vnd.oci.image.manifest.v1+json``) or Docker v2.

    ``layers`` are in order from the bottom of the filesystem up.
    """

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()
    media_type: str = OCI_MANIFEST
    annotations: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_docker(self) -> bool:
        """Whether this is a Docker v2 schema 2 manifest (config and layers of Docker types)."""
        return self.media_type == DOCKER_MANIFEST

    def to_json(self) -> bytes:
        data = {
            **self.extra,
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return canonical_json(data)

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "manifest") -> Manifest:
        doc = _load(data, where)
        media_type = doc.get("mediaType", OCI_MANIFEST)
        if media_type in INDEX_TYPES or (media_type == OCI_MANIFEST and "manifests" in doc):
            raise ImageFormatError(
                f"{where} is an image index (a list of manifests), not a manifest",
                hint="pick one platform's manifest from the index",
            )
        if media_type not in MANIFEST_TYPES:
            raise ImageFormatError(
                f"{where} has the media type {media_type!r}, which is not an image manifest",
                hint=f"use an image whose manifest is {OCI_MANIFEST} or {DOCKER_MANIFEST}",
            )
        _schema_version(doc, where)
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise ImageFormatError(f"{where}: 'layers' must be a list")
        return cls(
            media_type=media_type,
            config=Descriptor.from_dict(doc.get("config"), where=f"{where} config"),
            layers=tuple(
                Descriptor.from_dict(layer, where=f"{where} layer {i}")
                for i, layer in enumerate(layers)
            ),
            annotations=_str_map(doc, "annotations", where),
            extra=_rest(doc, "schemaVersion", "mediaType", "config", "layers", "annotations"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An image index (an OCI layout's ``index.json``, or a multi-platform image)."""

    manifests: tuple[Descriptor, ...] = ()
    media_type: str = OCI_INDEX
    annotations: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {
            **self.extra,
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_dict() for m in self.manifests],
        }
        if self.annotations:
            data["annotations"] = dict(self.annotations)
        return canonical_json(data)

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "index") -> Index:
        doc = _load(data, where)
        media_type = doc.get("mediaType", OCI_INDEX)
        if media_type not in INDEX_TYPES:
            raise ImageFormatError(f"{where} has the media type {media_type!r}, not an image index")
        _schema_version(doc, where)
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise ImageFormatError(f"{where}: 'manifests' must be a list")
        return cls(
            media_type=media_type,
            manifests=tuple(
                Descriptor.from_dict(m, where=f"{where} manifest {i}")
                for i, m in enumerate(manifests)
            ),
            annotations=_str_map(doc, "annotations", where),
            extra=_rest(doc, "schemaVersion", "mediaType", "manifests", "annotations"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One step of an image's history: usually one layer, or none when ``empty_layer``."""

    created: str | None = None
    created_by: str | None = None
    comment: str | None = None
    empty_layer: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        for key, value in (
            ("created", self.created),
            ("created_by", self.created_by),
            ("comment", self.comment),
        ):
            if value is not None:
                data[key] = value
        if self.empty_layer:
            data["empty_layer"] = True
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> HistoryEntry:
        doc = _object(data, where)
        return cls(
            created=_opt_str(doc, "created", where),
            created_by=_opt_str(doc, "created_by", where),
            comment=_opt_str(doc, "comment", where),
            empty_layer=doc.get("empty_layer") is True,
            extra=_rest(doc, "created", "created_by", "comment", "empty_layer"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """How a container of the image runs: the config's ``config`` object.

    ``env`` holds ``NAME=value`` strings in order. ``None`` means the field is absent.
    Fields this model does not know (``Volumes``, ``StopSignal``, ``Healthcheck``)
    stay in ``extra``.
    """

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.extra)
        if self.env:
            data["Env"] = list(self.env)
        if self.entrypoint is not None:
            data["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            data["Cmd"] = list(self.cmd)
        if self.working_dir:
            data["WorkingDir"] = self.working_dir
        if self.user:
            data["User"] = self.user
        if self.labels:
            data["Labels"] = dict(self.labels)
        if self.exposed_ports:
            data["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        return data

    @classmethod
    def from_dict(cls, data: Any, *, where: str) -> ContainerConfig:
        doc = {} if data is None else _object(data, where)
        ports = doc.get("ExposedPorts") or {}
        if not isinstance(ports, dict):
            raise ImageFormatError(f"{where}: 'ExposedPorts' must be an object")
        return cls(
            env=_opt_str_list(doc, "Env", where) or (),
            entrypoint=_opt_str_list(doc, "Entrypoint", where),
            cmd=_opt_str_list(doc, "Cmd", where),
            working_dir=_opt_str(doc, "WorkingDir", where),
            user=_opt_str(doc, "User", where),
            labels=_str_map(doc, "Labels", where),
            exposed_ports=tuple(sorted(ports)),
            extra=_rest(
                doc, "Env", "Entrypoint", "Cmd", "WorkingDir", "User", "Labels", "ExposedPorts"
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """An image configuration (OCI image-spec config.md): platform, run settings, layers, history.

    ``diff_ids`` are the sha256 of each layer's uncompressed tar, in manifest order.
    Top-level fields this model does not know stay in ``extra``.
    """

    architecture: str
    os: str
    variant: str | None = None
    created: str | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            **self.extra,
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config.to_dict(),
            "rootfs": {"type": "layers", "diff_ids": list(self.diff_ids)},
        }
        if self.variant:
            data["variant"] = self.variant
        if self.created is not None:
            data["created"] = self.created
        if self.history:
            data["history"] = [entry.to_dict() for entry in self.history]
        return data

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "image config") -> ImageConfig:
        doc = _object(data, where)
        rootfs = _object(doc.get("rootfs"), f"{where} rootfs")
        if rootfs.get("type") != "layers":
            raise ImageFormatError(
                f"{where}: rootfs type must be 'layers', not {rootfs.get('type')!r}"
            )
        diff_ids = _opt_str_list(rootfs, "diff_ids", f"{where} rootfs") or ()
        for diff_id in diff_ids:
            check_document_digest(diff_id, where=f"{where} rootfs")
        history = doc.get("history") or []
        if not isinstance(history, list):
            raise ImageFormatError(f"{where}: 'history' must be a list")
        return cls(
            architecture=_str(doc, "architecture", where),
            os=_str(doc, "os", where),
            variant=_opt_str(doc, "variant", where),
            created=_opt_str(doc, "created", where),
            config=ContainerConfig.from_dict(doc.get("config"), where=f"{where} config"),
            diff_ids=diff_ids,
            history=tuple(
                HistoryEntry.from_dict(h, where=f"{where} history {i}")
                for i, h in enumerate(history)
            ),
            extra=_rest(
                doc, "architecture", "os", "variant", "created", "config", "rootfs", "history"
            ),
        )

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "image config") -> ImageConfig:
        return cls.from_dict(_load(data, where), where=where)


def check_document_digest(digest: str, *, where: str) -> str:
    """``digest`` when it is a sha256 or sha512 digest, else an :class:`ImageFormatError`."""
    try:
        return check_digest(digest)
    except ImageReferenceError as error:
        raise ImageFormatError(f"{where}: {error.message}", hint=error.hint) from None


def _load(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ImageFormatError(f"{where} is not JSON: {error}") from None
    return _object(doc, where)


def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ImageFormatError(f"{where} must be a JSON object, not {type(data).__name__}")
    return data


def _schema_version(doc: Mapping[str, Any], where: str) -> None:
    if doc.get("schemaVersion") != 2:
        raise ImageFormatError(
            f"{where} has schemaVersion {doc.get('schemaVersion')!r}; only 2 is supported"
        )


def _str(doc: Mapping[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise ImageFormatError(f"{where}: {key!r} must be a non-empty string, not {value!r}")
    return value


def _opt_str(doc: Mapping[str, Any], key: str, where: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ImageFormatError(f"{where}: {key!r} must be a string, not {value!r}")
    return value


def _opt_str_list(doc: Mapping[str, Any], key: str, where: str) -> tuple[str, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageFormatError(f"{where}: {key!r} must be a list of strings, not {value!r}")
    return tuple(value)


def _str_map(doc: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = doc.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ImageFormatError(f"{where}: {key!r} must map strings to strings, not {value!r}")
    return dict(value)


def _rest(doc: Mapping[str, Any], *known: str) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key not in known}

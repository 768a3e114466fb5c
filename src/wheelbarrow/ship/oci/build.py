"""An app's image: the base untouched, one environment layer, one app layer, no daemon."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow.app.procfile import read_procfile
from wheelbarrow.app.webentry import detect_entry
from wheelbarrow.ship.oci.append import ConfigChanges, append_layers
from wheelbarrow.ship.oci.basepython import BasePython, from_config, from_layers, require_match
from wheelbarrow.ship.oci.compression import Compression, layer_compression
from wheelbarrow.ship.oci.image import ImageConfig, Manifest
from wheelbarrow.ship.oci.layer import (
    LayerBlob,
    LayerEntry,
    RegularFile,
    Symlink,
    entries_from_tree,
    image_path,
    write_layer,
)
from wheelbarrow.store.store import Store

VENV = "/opt/venv"
APP = "/app"
USER = "10001:10001"  # non-root, numeric: needs no passwd entry in the base
ENV_LAYER_FORMAT = 3
# What never goes into the app layer.
_APP_EXCLUDED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    "node_modules",
    ".heroku",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseImage:
    """A base image as read from a registry or an OCI layout: documents, and a way to its blobs."""

    name: str
    manifest: bytes
    config: bytes
    open_blob: Callable[[str], BinaryIO]

    @property
    def parsed_manifest(self) -> Manifest:
        """The manifest."""
        return Manifest.from_json(self.manifest, where=f"{self.name} manifest")

    @property
    def config_dict(self) -> dict[str, object]:
        """The config as JSON."""
        data: dict[str, object] = json.loads(self.config)
        return data

    @property
    def digest(self) -> str:
        """The base manifest's digest, which identifies the base."""
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class BuiltImage:
    """The new image's documents, the blobs only it adds, and what was reused."""

    manifest: bytes
    config: bytes
    env_layer: LayerBlob
    app_layer: LayerBlob
    env_layer_reused: bool
    base: BaseImage
    python: BasePython

    @property
    def digest(self) -> str:
        """The image's digest (of its manifest)."""
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    def blobs(self) -> dict[str, Path | bytes]:
        """The blobs this image adds to its base, by digest."""
        return {
            self.env_layer.digest: self.env_layer.path,
            self.app_layer.digest: self.app_layer.path,
            "sha256:" + hashlib.sha256(self.config).hexdigest(): self.config,
        }


def base_python(base: BaseImage, store: Store) -> BasePython | None:
    """The base's Python, from its config or its layers' listings (cached by manifest digest)."""
    cache = store.root / "oci" / "base-python" / f"{base.digest.split(':')[1]}.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        return BasePython(**data) if data else None
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        pass
    found = from_config(base.config_dict)
    if found is None:
        streams = [base.open_blob(layer.digest) for layer in base.parsed_manifest.layers]
        try:
            found = from_layers(streams)
        finally:
            for stream in streams:
                stream.close()
    atomic_write_text(cache, json.dumps(dataclasses.asdict(found) if found else None))
    return found


def environment_layer(
    env: Path | Callable[[], Path],
    *,
    env_key: str,
    python: BasePython,
    store: Store,
    mtime: int,
    compression: Compression | None = None,
) -> tuple[LayerBlob, bool]:
    """The environment at ``/opt/venv`` for the base's Python; made once per key, then reused.

    The store's environment is mapped into the image: its own path becomes
    ``/opt/venv`` in scripts, and ``pyvenv.cfg`` and the ``python`` links name
    the base's interpreter. Its digest depends on the environment (the
    wheelhouse key), the base's Python and the compression (algorithm, library
    and its version, level, chunk size) only, so it is reused byte for byte
    while those stay the same; another compression is another layer. ``env``
    may be a function giving the environment's path, called only when the
    layer is not already made.
    """
    compression = compression or layer_compression()
    key_data = (
        f"{ENV_LAYER_FORMAT}\0{env_key}\0{python.executable}\0{python.version}\0{mtime}"
        f"\0{compression.key}"
    )
    key = hashlib.sha256(key_data.encode()).hexdigest()[:32]
    record = store.root / "oci" / "env-layers" / f"{key}.json"
    cached = _recorded_layer(record, store, compression)
    if cached is not None:
        return cached, True
    entries = _env_entries(env() if callable(env) else env, python)
    with store.scratch("layer-") as out:
        layer = _into_store(write_layer(entries, out, mtime=mtime, compression=compression), store)
    atomic_write_text(
        record,
        json.dumps(
            {
                "digest": layer.digest,
                "diff_id": layer.diff_id,
                "size": layer.size,
                "compression": compression.key,
            }
        ),
    )
    return layer, False


def _recorded_layer(record: Path, store: Store, compression: Compression) -> LayerBlob | None:
    """The layer ``record`` names, when the record and its blob are in the store."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        blob = store.blob(data["digest"].split(":")[1])
        if blob.is_file():
            return LayerBlob(
                path=blob,
                digest=data["digest"],
                diff_id=data["diff_id"],
                size=data["size"],
                media_type=compression.media_type,
            )
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        pass
    return None


def _env_entries(env: Path, python: BasePython) -> list[LayerEntry]:
    """The entries of the stored environment ``env`` at ``/opt/venv``, for the base's Python."""
    old = str(env).encode()

    def rewrite(path: Path, data: bytes) -> bytes:
        if path.name == "pyvenv.cfg":
            return _pyvenv_cfg(python)
        return data.replace(old, VENV.encode())

    entries: list[LayerEntry] = []
    # wheelbarrow's own records at the top (the marker, the seal of the stored tree with its
    # inodes and mtimes): no part of the environment, and they would make every layer differ.
    for entry in entries_from_tree(
        env, prefix=VENV, exclude=lambda rel: "/" not in rel and rel.startswith(".wheelbarrow-")
    ):
        # Entry paths are stored without the leading slash (image_path).
        if isinstance(entry, RegularFile) and (
            entry.path.startswith(image_path(f"{VENV}/bin") + "/")
            or entry.path == image_path(f"{VENV}/pyvenv.cfg")
        ):
            entry = dataclasses.replace(entry, rewrite=rewrite)
        elif isinstance(entry, Symlink) and entry.target.startswith("/"):
            # bin/python points at the interpreter the environment was made with.
            entry = dataclasses.replace(entry, target=python.executable)
        entries.append(entry)
    return entries


def _into_store(layer: LayerBlob, store: Store) -> LayerBlob:
    """Move a layer just written into the store's blobs, named by its digest."""
    final = store.blob(layer.digest.split(":")[1])
    final.parent.mkdir(parents=True, exist_ok=True)
    layer.path.replace(final)
    return dataclasses.replace(layer, path=final)


def _pyvenv_cfg(python: BasePython) -> bytes:
    return (
        f"home = {python.home}\n"
        "include-system-site-packages = false\n"
        f"version = {python.version}\n"
        f"executable = {python.executable}\n"
    ).encode()


def app_layer(
    app_dir: Path, *, out_dir: Path, mtime: int, compression: Compression | None = None
) -> LayerBlob:
    """The app's files at ``/app``, without caches, VCS data or local environments."""

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        return bool(_APP_EXCLUDED_DIRS & set(parts)) or rel.endswith((".pyc", ".pyo"))

    return write_layer(
        entries_from_tree(app_dir, prefix=APP, exclude=excluded),
        out_dir,
        mtime=mtime,
        compression=compression,
    )


def web_command(app_dir: Path) -> str | None:
    """The Procfile's ``web`` command; without a Procfile, the detected web process's."""
    procfile = read_procfile(app_dir)
    if procfile is not None:
        return procfile.command("web")
    entry = detect_entry(app_dir)
    return entry.command if entry else None


def build_image(
    app_dir: Path,
    *,
    base: BaseImage,
    env: Path | Callable[[], Path],
    env_key: str,
    target_python: str,
    labels: Mapping[str, str],
    store: Store,
    mtime: int,
    compression: Compression | None = None,
) -> BuiltImage:
    """Append the environment and app layers to ``base`` and set the run settings.

    ``env`` may be a function giving the stored environment's path: it is
    called only when the environment layer is not already made.
    """
    python = require_match(base_python(base, store), target=target_python, image=base.name)
    compression = compression or layer_compression()
    env_blob, reused = environment_layer(
        env, env_key=env_key, python=python, store=store, mtime=mtime, compression=compression
    )
    with store.scratch("layer-") as out:
        app_blob = _into_store(
            app_layer(app_dir, out_dir=out, mtime=mtime, compression=compression), store
        )
    config = ImageConfig.from_json(base.config, where=f"{base.name} config")
    path = next(
        (e.partition("=")[2] for e in config.config.env if e.startswith("PATH=")),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    )
    command = web_command(app_dir)
    changes = ConfigChanges(
        env={
            "PATH": f"{VENV}/bin:{path}",
            "VIRTUAL_ENV": VENV,
            "PYTHONUNBUFFERED": "1",
            "PORT": "8080",
        },
        cmd=["/bin/sh", "-c", command] if command else None,
        working_dir=APP,
        user=USER,
        labels=dict(labels),
        exposed_ports=["8080/tcp"],
    )
    documents = append_layers(
        config,
        base.parsed_manifest,
        [env_blob, app_blob],
        config_changes=changes,
        created=mtime,
        created_by=[f"wheelbarrow: environment {env_key}", "wheelbarrow: app"],
    )
    return BuiltImage(
        manifest=documents.manifest,
        config=documents.config,
        env_layer=env_blob,
        app_layer=app_blob,
        env_layer_reused=reused,
        base=base,
        python=python,
    )


def source_date_epoch(environ: Mapping[str, str]) -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible builds), else 0."""
    value = environ.get("SOURCE_DATE_EPOCH", "0").strip() or "0"
    if not value.isdigit():
        raise InputError(
            f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds",
            hint="unset it, or set it to e.g. $(git log -1 --format=%ct)",
        )
    return int(value)


def copy_blob(open_blob: Callable[[str], BinaryIO], digest: str, dest: Path) -> None:
    """Stream a blob to ``dest`` (a temporary name, then renamed)."""
    tmp = dest.with_name(dest.name + ".part")
    with open_blob(digest) as src, tmp.open("wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    tmp.replace(dest)


def labels_for(
    app_dir: Path, *, lock_sha256: str, wheelhouse: str, source: str | None, mtime: int
) -> dict[str, str]:
    """The image's labels: where it came from, and the lock it was built from."""
    from wheelbarrow.ship.oci.image import epoch_timestamp

    labels = {
        "io.wheelbarrow.lock.resolve.sha256": lock_sha256,
        "io.wheelbarrow.wheelhouse.assemble": wheelhouse,
        "org.opencontainers.image.created": epoch_timestamp(mtime),
        "org.opencontainers.image.title": app_dir.name,
    }
    if source:
        labels["org.opencontainers.image.source"] = source
    return labels

"""CNB layers during ``bin/build``: reused while their metadata is unchanged, else rebuilt."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import BuildpackError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow.ship.heroku.cnb_toml import table_body, toml_value

# The lifecycle writes these beside the layers: a layer of that name would collide.
_RESERVED_LAYER_NAMES = frozenset({"launch", "build", "store"})
# How a changed [metadata] field is named in a rebuild reason; others use the key itself.
_FIELD_LABELS = {"python": "python version"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Layer:
    """A layer as the lifecycle left it in the layers directory at the start of a build.

    ``metadata`` is the restored ``[metadata]`` table of ``<layers>/<name>.toml``, or None
    when there is no such file (or it cannot be read: ``problem`` then says why).
    ``has_contents`` says whether ``<layers>/<name>/`` exists: the lifecycle restores it
    only for cache layers, while a launch-only layer comes back as its metadata alone.
    """

    name: str
    path: Path
    metadata: Mapping[str, Any] | None
    has_contents: bool
    problem: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerResult:
    """What :meth:`LayerStore.want_layer` did with a layer, and why."""

    reused: bool
    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class LayerStore:
    """The layers directory of one buildpack (``CNB_LAYERS_DIR``) during ``bin/build``."""

    root: Path

    def layer(self, name: str) -> Layer:
        """The restored state of layer ``name``: its metadata and whether its directory exists."""
        _check_layer_name(name)
        path = self.root / name
        toml_path = self.root / f"{name}.toml"
        has_contents = path.is_dir()
        if not toml_path.is_file():
            return Layer(name=name, path=path, metadata=None, has_contents=has_contents)
        try:
            document = tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return Layer(
                name=name, path=path, metadata=None, has_contents=has_contents, problem=str(exc)
            )
        metadata = document.get("metadata", {})
        if not isinstance(metadata, dict):
            return Layer(
                name=name,
                path=path,
                metadata=None,
                has_contents=has_contents,
                problem="[metadata] is not a table",
            )
        return Layer(name=name, path=path, metadata=metadata, has_contents=has_contents)

    def want_layer(
        self,
        name: str,
        *,
        metadata: Mapping[str, Any],
        launch: bool,
        build: bool,
        cache: bool,
        populate: Callable[[Path], None],
    ) -> LayerResult:
        """Keep layer ``name`` when it still fits ``metadata``, else rebuild it with ``populate``.

        A layer is reused exactly when its restored metadata equals ``metadata`` and, unless it
        is launch-only, its directory was restored. A reused launch-only layer has no local
        directory: the lifecycle takes its contents from the previous image, so ``path`` must
        not be written to. Otherwise the directory is emptied, ``populate(path)`` fills it
        (environment files included), and only then ``<name>.toml`` is written. Either way
        ``<name>.toml`` is rewritten with ``[types]``: the restored one has none, and the
        lifecycle ignores a layer without them.
        """
        previous = self.layer(name)
        wanted = _normalised(metadata, layer=name)
        # Only a launch layer that subsequent buildpacks need not read can live on in the
        # previous image alone; build and cache layers need their contents here.
        needs_contents = build or cache or not launch
        reason = _stale_reason(previous, wanted, needs_contents=needs_contents)
        toml_path = self.root / f"{name}.toml"
        text = _layer_toml(launch=launch, build=build, cache=cache, metadata=wanted)
        if reason is None:
            atomic_write_text(toml_path, text)
            return LayerResult(reused=True, path=previous.path, reason="metadata matches")

        # Drop the old metadata first: a failed populate must not leave it claiming a match.
        toml_path.unlink(missing_ok=True)
        _remove(previous.path)
        previous.path.mkdir(parents=True)
        try:
            populate(previous.path)
        except BaseException:
            _remove(previous.path)
            raise
        atomic_write_text(toml_path, text)
        return LayerResult(reused=False, path=previous.path, reason=reason)

    def remove_layer(self, name: str) -> None:
        """Remove the layer ``name`` and its metadata, so the new image and cache lack it."""
        _check_layer_name(name)
        (self.root / f"{name}.toml").unlink(missing_ok=True)
        _remove(self.root / name)


def _stale_reason(
    previous: Layer, wanted: Mapping[str, Any], *, needs_contents: bool
) -> str | None:
    """Why ``previous`` cannot be reused for ``wanted``; None when it can."""
    if previous.problem is not None:
        return f"previous metadata unreadable ({previous.problem})"
    if previous.metadata is None:
        return "no previous layer"
    changes = _changes(previous.metadata, wanted)
    if changes:
        return "; ".join(changes)
    if needs_contents and not previous.has_contents:
        return "metadata matches, but the cached contents were not restored"
    return None


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = list(new) + [key for key in old if key not in new]
    return [
        f"{_FIELD_LABELS.get(key, key.replace('_', ' '))} changed: "
        f"{_shown(old.get(key))} -> {_shown(new.get(key))}"
        for key in keys
        if old.get(key) != new.get(key) or (key in old) != (key in new)
    ]


def _shown(value: object) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else toml_value(value)


def _normalised(metadata: Mapping[str, Any], *, layer: str) -> dict[str, Any]:
    """``metadata`` as it will read back from TOML (tuples become lists), checked writable."""
    try:
        text = table_body(metadata)
    except (TypeError, ValueError) as exc:
        raise BuildpackError(
            f"layer {layer!r}: metadata cannot be written as TOML: {exc}",
            hint="use strings, numbers, booleans, lists and tables only",
        ) from exc
    return tomllib.loads(text)


def _layer_toml(*, launch: bool, build: bool, cache: bool, metadata: Mapping[str, Any]) -> str:
    types = f"[types]\nlaunch = {toml_value(launch)}\nbuild = {toml_value(build)}\n"
    types += f"cache = {toml_value(cache)}\n"
    return f"{types}\n[metadata]\n{table_body(metadata)}"


def _check_layer_name(name: str) -> None:
    if (
        not name
        or name in {".", ".."}
        or any(c in name for c in "/\\\0")
        or name in _RESERVED_LAYER_NAMES
    ):
        raise BuildpackError(
            f"{name!r} cannot name a layer",
            hint="use a plain file name other than launch, build or store",
        )


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)

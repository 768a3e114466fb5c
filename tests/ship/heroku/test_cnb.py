"""The Cloud Native Buildpack contract, driven the way the lifecycle drives a buildpack."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wheelbarrow._core.errors import BuildpackError, InputError, TargetError
from wheelbarrow.ship.heroku.cnb import (
    DETECT_FAIL,
    DETECT_PASS,
    Process,
    buildpack_toml,
    detect,
    main,
    plan_python_version,
    write_launch,
)
from wheelbarrow.ship.heroku.cnb_env import EnvVar, venv_env, write_env
from wheelbarrow.ship.heroku.cnb_layers import LayerStore

META = {"wheelhouse_key": "k1", "python": "3.11.7"}


def read_toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def next_build(layers: Path) -> None:
    """Leave ``layers`` as the lifecycle restores it before the next build.

    Following the spec's Layer Types table: metadata comes back (without ``[types]``) for
    cache layers and launch layers not also for build, contents only for cache layers.
    """
    for toml_path in layers.glob("*.toml"):
        if toml_path.name in {"launch.toml", "build.toml", "store.toml"}:
            toml_path.unlink()
            continue
        document = read_toml(toml_path)
        types = document.get("types", {})
        directory = layers / toml_path.stem
        if not types.get("cache") and directory.exists():
            for path in sorted(directory.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            directory.rmdir()
        if types.get("cache") or (types.get("launch") and not types.get("build")):
            text = toml_path.read_text(encoding="utf-8")
            toml_path.write_text(text[text.index("[metadata]") :], encoding="utf-8")
        else:
            toml_path.unlink()


class Populate:
    """A populate callback that records its calls and writes a marker file."""

    def __init__(self, content: str = "v1") -> None:
        self.calls: list[Path] = []
        self.content = content

    def __call__(self, path: Path) -> None:
        self.calls.append(path)
        (path / "marker").write_text(self.content, encoding="utf-8")


def want(
    store: LayerStore,
    name: str,
    populate: Callable[[Path], None],
    metadata: dict[str, Any] | None = None,
    **types: bool,
) -> Any:
    layer_types = {"launch": False, "build": False, "cache": False} | types
    return store.want_layer(
        name, metadata=META if metadata is None else metadata, populate=populate, **layer_types
    )


@pytest.fixture
def layers(tmp_path: Path) -> Path:
    path = tmp_path / "layers"
    path.mkdir()
    return path


class TestDetect:
    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("requirements.txt", "numpy\n"),
            ("pyproject.toml", '[project]\nname = "app"\ndependencies = ["numpy"]\n'),
            ("pylock.toml", 'lock-version = "1.0"\n'),
        ],
    )
    def test_passes_on_a_file_that_lists_dependencies(
        self, tmp_path: Path, name: str, text: str
    ) -> None:
        """requirements.txt, [project] dependencies or pylock.toml pass, writing the plan."""
        (tmp_path / name).write_text(text, encoding="utf-8")
        plan = tmp_path / "plan.toml"
        assert detect(tmp_path, plan_path=plan) == DETECT_PASS
        assert read_toml(plan) == {
            "provides": [{"name": "python"}],
            "requires": [{"name": "python"}],
        }

    @pytest.mark.parametrize(
        "files",
        [
            {},
            {"Pipfile": "[packages]\nnumpy = '*'\n"},
            {"pyproject.toml": '[project]\nname = "app"\n'},
            {"pyproject.toml": "[tool.black]\nline-length = 100\n"},
        ],
    )
    def test_fails_with_100_and_no_plan_otherwise(
        self, tmp_path: Path, files: dict[str, str]
    ) -> None:
        """An app that lists no dependencies in a file wheelbarrow reads fails, writing no plan."""
        for name, text in files.items():
            (tmp_path / name).write_text(text, encoding="utf-8")
        plan = tmp_path / "plan.toml"
        assert detect(tmp_path, plan_path=plan) == DETECT_FAIL == 100
        assert not plan.exists()

    @pytest.mark.parametrize(
        ("name", "text", "version"),
        [(".python-version", "3.12.1\n", "3.12.1"), ("runtime.txt", "python-3.11.7\n", "3.11.7")],
    )
    def test_plan_requires_the_pinned_python(
        self, tmp_path: Path, name: str, text: str, version: str
    ) -> None:
        """A version pinned by .python-version or runtime.txt becomes requires.metadata.version."""
        (tmp_path / "requirements.txt").write_text("flask\n", encoding="utf-8")
        (tmp_path / name).write_text(text, encoding="utf-8")
        plan = tmp_path / "plan.toml"
        assert detect(tmp_path, plan_path=plan) == DETECT_PASS
        assert read_toml(plan)["requires"] == [{"name": "python", "metadata": {"version": version}}]

    def test_broken_pyproject_is_an_error_not_a_fail(self, tmp_path: Path) -> None:
        """A pyproject.toml that is not TOML raises an input error naming the file."""
        (tmp_path / "pyproject.toml").write_text("[project\n", encoding="utf-8")
        with pytest.raises(InputError, match=r"pyproject\.toml: not valid TOML"):
            detect(tmp_path, plan_path=tmp_path / "plan.toml")

    def test_bad_version_file_is_an_error(self, tmp_path: Path) -> None:
        """A .python-version that is no CPython version raises a target error."""
        (tmp_path / "requirements.txt").write_text("flask\n", encoding="utf-8")
        (tmp_path / ".python-version").write_text("pypy\n", encoding="utf-8")
        with pytest.raises(TargetError, match="pypy"):
            detect(tmp_path, plan_path=tmp_path / "plan.toml")

    def test_main_reads_the_plan_path_from_the_environment(self, tmp_path: Path) -> None:
        """The entry point detects in the working directory and writes to $CNB_BUILD_PLAN_PATH."""
        (tmp_path / "requirements.txt").write_text("flask\n", encoding="utf-8")
        plan = tmp_path / "out" / "plan.toml"
        code = main(["detect"], environ={"CNB_BUILD_PLAN_PATH": str(plan)}, cwd=tmp_path)
        assert code == DETECT_PASS
        assert read_toml(plan)["provides"] == [{"name": "python"}]

    def test_main_without_plan_path_reports_an_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without $CNB_BUILD_PLAN_PATH the entry point exits 1 with an error and a hint."""
        assert main(["detect"], environ={}, cwd=tmp_path) == 1
        err = capsys.readouterr().err
        assert "error: CNB_BUILD_PLAN_PATH is not set" in err
        assert "hint: " in err


class TestBuildpackPlan:
    def test_reads_the_requested_version(self, tmp_path: Path) -> None:
        """The python entry's metadata.version in the Buildpack Plan is returned."""
        plan = tmp_path / "plan.toml"
        plan.write_text(
            '[[entries]]\nname = "node"\n\n[[entries]]\nname = "python"\n'
            '[entries.metadata]\nversion = "3.12"\n',
            encoding="utf-8",
        )
        assert plan_python_version(plan) == "3.12"

    def test_no_version_gives_none(self, tmp_path: Path) -> None:
        """A plan whose python entry has no version gives None."""
        plan = tmp_path / "plan.toml"
        plan.write_text('[[entries]]\nname = "python"\n', encoding="utf-8")
        assert plan_python_version(plan) is None


class TestWantLayer:
    def test_first_build_populates_and_writes_types_and_metadata(self, layers: Path) -> None:
        """With nothing restored, the layer is populated and <name>.toml gets types and metadata."""
        populate = Populate()
        result = want(LayerStore(layers), "python", populate, launch=True, cache=True)
        assert (result.reused, result.path, result.reason) == (
            False,
            layers / "python",
            "no previous layer",
        )
        assert populate.calls == [layers / "python"]
        assert read_toml(layers / "python.toml") == {
            "types": {"launch": True, "build": False, "cache": True},
            "metadata": META,
        }

    def test_metadata_is_written_only_after_populate(self, layers: Path) -> None:
        """While populate runs there is no <name>.toml, old or new."""
        store = LayerStore(layers)
        want(store, "env", Populate(), launch=True)
        next_build(layers)
        seen: list[bool] = []
        want(
            store,
            "env",
            lambda path: seen.append((layers / "env.toml").exists()),
            {"wheelhouse_key": "k2", "python": "3.11.7"},
            launch=True,
        )
        assert seen == [False]
        assert (layers / "env.toml").exists()

    def test_next_build_with_same_metadata_reuses_both_layer_kinds(self, layers: Path) -> None:
        """Unchanged metadata reuses a cache layer and a launch-only layer without populating."""
        store = LayerStore(layers)
        want(store, "python", Populate(), launch=True, build=True, cache=True)
        want(store, "env", Populate(), launch=True)
        next_build(layers)
        assert not (layers / "env").exists()
        assert (layers / "python" / "marker").exists()

        populate = Populate("v2")
        python = want(store, "python", populate, launch=True, build=True, cache=True)
        env = want(store, "env", populate, launch=True)
        assert populate.calls == []
        assert (python.reused, python.reason) == (True, "metadata matches")
        assert (env.reused, env.reason) == (True, "metadata matches")
        assert (layers / "python" / "marker").read_text(encoding="utf-8") == "v1"
        # The launch-only layer stays absent: the exporter takes it from the previous image.
        assert not (layers / "env").exists()
        assert read_toml(layers / "env.toml") == {
            "types": {"launch": True, "build": False, "cache": False},
            "metadata": META,
        }

    def test_changed_wheelhouse_key_rebuilds_and_says_so(self, layers: Path) -> None:
        """A new wheelhouse key rebuilds the layer from an empty directory and names the change."""
        store = LayerStore(layers)
        want(store, "python", Populate(), launch=True, cache=True)
        (layers / "python" / "stale").write_text("old", encoding="utf-8")
        next_build(layers)
        populate = Populate("v2")
        result = want(
            store,
            "python",
            populate,
            {"wheelhouse_key": "k2", "python": "3.11.7"},
            launch=True,
            cache=True,
        )
        assert (result.reused, result.reason) == (False, "wheelhouse key changed: k1 -> k2")
        assert populate.calls == [layers / "python"]
        assert sorted(p.name for p in (layers / "python").iterdir()) == ["marker"]
        assert read_toml(layers / "python.toml")["metadata"]["wheelhouse_key"] == "k2"

    def test_changed_python_rebuilds_a_launch_only_layer(self, layers: Path) -> None:
        """A different Python rebuilds a launch-only layer, recreating its directory."""
        store = LayerStore(layers)
        want(store, "env", Populate(), launch=True)
        next_build(layers)
        result = want(
            store, "env", Populate(), {"wheelhouse_key": "k1", "python": "3.12.1"}, launch=True
        )
        assert (result.reused, result.reason) == (False, "python version changed: 3.11.7 -> 3.12.1")
        assert (layers / "env" / "marker").exists()

    def test_every_changed_field_is_named(self, layers: Path) -> None:
        """Changed, added and removed fields all appear in the reason."""
        store = LayerStore(layers)
        want(store, "env", Populate(), {"python": "3.11.7", "old": 1}, launch=True)
        next_build(layers)
        result = want(
            store, "env", Populate(), {"python": "3.12.1", "stack": "heroku-24"}, launch=True
        )
        assert result.reason == (
            "python version changed: 3.11.7 -> 3.12.1; stack changed: (none) -> heroku-24; "
            "old changed: 1 -> (none)"
        )

    def test_cache_layer_without_its_directory_rebuilds(self, layers: Path) -> None:
        """Matching metadata is not enough for a cache layer whose contents were not restored."""
        store = LayerStore(layers)
        want(store, "python", Populate(), launch=True, cache=True)
        next_build(layers)
        (layers / "python" / "marker").unlink()
        (layers / "python").rmdir()
        populate = Populate()
        result = want(store, "python", populate, launch=True, cache=True)
        assert not result.reused
        assert result.reason == "metadata matches, but the cached contents were not restored"
        assert populate.calls == [layers / "python"]

    def test_launch_and_build_layer_is_never_restored(self, layers: Path) -> None:
        """A launch+build layer without cache comes back as nothing, so it is rebuilt."""
        store = LayerStore(layers)
        want(store, "tools", Populate(), launch=True, build=True)
        next_build(layers)
        result = want(store, "tools", Populate(), launch=True, build=True)
        assert (result.reused, result.reason) == (False, "no previous layer")

    def test_failed_populate_leaves_no_layer(self, layers: Path) -> None:
        """When populate raises, neither the directory nor any metadata remains."""
        store = LayerStore(layers)
        want(store, "python", Populate(), launch=True, cache=True)
        next_build(layers)

        def broken(path: Path) -> None:
            (path / "half").write_text("x", encoding="utf-8")
            raise RuntimeError("download failed")

        with pytest.raises(RuntimeError, match="download failed"):
            want(store, "python", broken, {"wheelhouse_key": "k2"}, launch=True, cache=True)
        assert not (layers / "python").exists()
        assert not (layers / "python.toml").exists()
        assert want(store, "python", Populate(), launch=True, cache=True).reason == (
            "no previous layer"
        )

    def test_unreadable_metadata_rebuilds(self, layers: Path) -> None:
        """A restored <name>.toml that is not TOML leads to a rebuild that says why."""
        (layers / "python").mkdir()
        (layers / "python.toml").write_text("[metadata\n", encoding="utf-8")
        result = want(LayerStore(layers), "python", Populate(), launch=True, cache=True)
        assert not result.reused
        assert result.reason.startswith("previous metadata unreadable (")

    def test_metadata_compares_as_toml_reads_it_back(self, layers: Path) -> None:
        """Tuples and nested tables in metadata match their TOML round trip on the next build."""
        metadata = {"key": "k1", "tags": ("cp312", "manylinux"), "sub": {"a": 1, "b": [True]}}
        store = LayerStore(layers)
        want(store, "env", Populate(), metadata, launch=True, cache=True)
        next_build(layers)
        populate = Populate()
        result = want(store, "env", populate, metadata, launch=True, cache=True)
        assert result.reused
        assert populate.calls == []

    def test_layer_reports_the_restored_state(self, layers: Path) -> None:
        """layer() gives the restored metadata and whether the directory came back."""
        store = LayerStore(layers)
        want(store, "env", Populate(), launch=True)
        next_build(layers)
        layer = store.layer("env")
        assert (layer.metadata, layer.has_contents, layer.problem) == (META, False, None)
        assert store.layer("absent").metadata is None

    def test_unwritable_metadata_is_refused_before_populating(self, layers: Path) -> None:
        """Metadata TOML cannot hold raises a buildpack error and populate never runs."""
        populate = Populate()
        with pytest.raises(BuildpackError, match="metadata cannot be written as TOML"):
            want(LayerStore(layers), "env", populate, {"when": object()}, launch=True)
        assert populate.calls == []

    @pytest.mark.parametrize("name", ["launch", "build", "store", "", "..", "a/b"])
    def test_reserved_or_unsafe_names_are_refused(self, layers: Path, name: str) -> None:
        """Names that collide with the lifecycle's files or leave the directory are refused."""
        with pytest.raises(BuildpackError, match="cannot name a layer"):
            want(LayerStore(layers), name, Populate(), launch=True)

    def test_remove_layer_drops_directory_and_metadata(self, layers: Path) -> None:
        """remove_layer deletes both the directory and <name>.toml."""
        store = LayerStore(layers)
        want(store, "python", Populate(), cache=True)
        store.remove_layer("python")
        assert list(layers.iterdir()) == []


class TestLayerEnv:
    def test_venv_env_files(self, layers: Path) -> None:
        """The venv's bin is prepended to PATH with ':', and PYTHONUNBUFFERED is set at launch."""
        layer = layers / "python"
        venv = layer / "venv"
        write_env(layer, venv_env(venv))
        files = {
            str(p.relative_to(layer)): p.read_text(encoding="utf-8")
            for p in layer.rglob("*")
            if p.is_file()
        }
        assert files == {
            "env/PATH.prepend": str(venv / "bin"),
            "env/PATH.delim": ":",
            "env/VIRTUAL_ENV.override": str(venv),
            "env.launch/PYTHONUNBUFFERED.override": "1",
        }

    def test_process_specific_and_build_scopes(self, layers: Path) -> None:
        """Per-process launch variables go in env.launch/<process>/, build ones in env.build/."""
        written = write_env(
            layers / "l",
            [
                EnvVar(name="WEB_CONCURRENCY", value="2", scope="launch", process="web"),
                EnvVar(name="CFLAGS", value="-O2", action="append", delim=" ", scope="build"),
            ],
        )
        assert [p.relative_to(layers / "l").as_posix() for p in written] == [
            "env.launch/web/WEB_CONCURRENCY.override",
            "env.build/CFLAGS.append",
            "env.build/CFLAGS.delim",
        ]

    def test_prepend_without_delimiter_is_refused(self) -> None:
        """A prepend without delim raises, since the lifecycle would glue the values together."""
        with pytest.raises(BuildpackError, match="needs a delimiter"):
            EnvVar(name="PATH", value="/x/bin", action="prepend")

    @pytest.mark.parametrize("name", ["A.B", "", "1X", "a/b"])
    def test_bad_names_are_refused(self, name: str) -> None:
        """A variable name the lifecycle would cut or misread raises."""
        with pytest.raises(BuildpackError, match="cannot name an environment variable"):
            EnvVar(name=name, value="v")

    def test_relative_venv_is_refused(self) -> None:
        """A relative venv path raises, since the layer is exported at its absolute path."""
        with pytest.raises(BuildpackError, match="absolute"):
            venv_env(Path("venv"))


class TestLaunch:
    def test_processes_parse_back(self, layers: Path) -> None:
        """launch.toml holds each process with a command list, args, default and working-dir."""
        path = write_launch(
            layers,
            [
                Process(
                    type="web",
                    command=("gunicorn",),
                    args=("--bind", "0.0.0.0:$PORT", "app:app"),
                    default=True,
                ),
                Process(
                    type="worker", command=("python", "-m", "worker"), working_dir="/workspace/w"
                ),
            ],
        )
        assert path == layers / "launch.toml"
        assert read_toml(path) == {
            "processes": [
                {
                    "type": "web",
                    "command": ["gunicorn"],
                    "args": ["--bind", "0.0.0.0:$PORT", "app:app"],
                    "default": True,
                },
                {
                    "type": "worker",
                    "command": ["python", "-m", "worker"],
                    "default": False,
                    "working-dir": "/workspace/w",
                },
            ]
        }

    def test_strings_needing_escapes_survive(self, layers: Path) -> None:
        """Quotes, backslashes and control characters in arguments read back unchanged."""
        arg = 'say "hi"\\there\n\ttab\x7f'
        write_launch(layers, [Process(type="web", command=("echo",), args=(arg,))])
        assert read_toml(layers / "launch.toml")["processes"][0]["args"] == [arg]

    def test_two_defaults_are_refused(self, layers: Path) -> None:
        """Only one process may be the default."""
        processes = [
            Process(type="web", command=("a",), default=True),
            Process(type="worker", command=("b",), default=True),
        ]
        with pytest.raises(BuildpackError, match="more than one default process"):
            write_launch(layers, processes)

    def test_duplicate_types_are_refused(self, layers: Path) -> None:
        """A process type given twice raises."""
        with pytest.raises(BuildpackError, match="given twice: web"):
            write_launch(layers, [Process(type="web", command=("a",))] * 2)

    @pytest.mark.parametrize(("kind", "command"), [("we b", ("a",)), ("web", ()), ("web", ("",))])
    def test_bad_processes_are_refused(self, kind: str, command: tuple[str, ...]) -> None:
        """A type with other characters, or an empty command, raises."""
        with pytest.raises(BuildpackError):
            Process(type=kind, command=command)


class TestBuildpackToml:
    def test_declares_api_identity_and_targets(self) -> None:
        """buildpack.toml declares API 0.10, the id, the version and linux amd64 and arm64."""
        document = tomllib.loads(buildpack_toml("0.1.0"))
        assert document["api"] == "0.10"
        assert document["buildpack"]["id"] == "wheelbarrow/python"
        assert document["buildpack"]["version"] == "0.1.0"
        assert document["buildpack"]["name"]
        assert document["targets"] == [
            {"os": "linux", "arch": "amd64"},
            {"os": "linux", "arch": "arm64"},
        ]

    def test_empty_version_is_refused(self) -> None:
        """An empty version raises."""
        with pytest.raises(BuildpackError):
            buildpack_toml(" ")

    def test_main_prints_it(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The entry point prints buildpack.toml for a version."""
        assert main(["buildpack-toml", "1.2.3"]) == 0
        assert tomllib.loads(capsys.readouterr().out)["buildpack"]["version"] == "1.2.3"

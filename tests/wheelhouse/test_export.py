"""`build --output DIR`: export the wheelhouse, replacing only a previous export."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import build_cli, build_ok, make_app

from wheelbarrow.store.store import Store

MARKER = ".wheelbarrow-export.json"

SMALL = 12
LARGE = 16


def _tree(root: Path) -> dict[str, str]:
    """Every file and link under ``root`` with the sha256 of its bytes (or its link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "-> " + str(path.readlink())
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "dir"
    return found


def consistent(directory: Path) -> list[str]:
    """What is wrong with an export: wheels the manifest does not list, or listed ones missing."""
    manifest = json.loads((directory / "wheelhouse.json").read_text(encoding="utf-8"))
    listed = {w["filename"]: w["sha256"] for w in manifest["wheels"]}
    present = {p.name for p in directory.glob("*.whl")}
    problems = [f"unlisted {n}" for n in sorted(present - listed.keys())]
    problems += [f"missing {n}" for n in sorted(listed.keys() - present)]
    for name in sorted(present & listed.keys()):
        if hashlib.sha256((directory / name).read_bytes()).hexdigest() != listed[name]:
            problems.append(f"changed {name}")
    marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    if marker["key"] != manifest["key"]:
        problems.append(f"marker names {marker['key']}, the manifest {manifest['key']}")
    return problems


@pytest.fixture
def index_url(tmp_path, local_index):
    """A local index of 16 small wheels, pkg00 to pkg15."""
    dists = tmp_path / "dists"
    for i in range(LARGE):
        make_wheel(dists, f"pkg{i:02d}", "1.0")
    return local_index(dists).url


def _requirements(n: int) -> str:
    return "".join(f"pkg{i:02d}==1.0\n" for i in range(n))


@pytest.fixture
def built(tmp_path, index_url):
    """An app built into a store: (app, store, report)."""
    app = make_app(tmp_path / "app", _requirements(SMALL))
    store = tmp_path / "store"
    return app, store, build_ok(app, store, index_url)


class TestExportRefuses:
    def test_output_into_the_app_itself_keeps_every_file(self, tmp_path, index_url, built):
        """`--output APP` is refused, naming APP, and its sources and .git stay byte for byte."""
        app, store, _ = built
        (app / ".git" / "objects").mkdir(parents=True)
        (app / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (app / "main.py").write_text("print('hello')\n")
        before = _tree(app)
        result = build_cli(app, store, index_url, "--output", app)
        assert result.code != 0
        assert f"{app}: " in result.err
        assert "was not exported by wheelbarrow" in result.err
        assert "hint: " in result.err
        assert "Traceback" not in result.err
        assert _tree(app) == before

    def test_output_into_a_docker_context_keeps_its_dockerfile(self, tmp_path, index_url, built):
        """A context directory holding a Dockerfile is refused and the Dockerfile survives."""
        app, store, _ = built
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM python:3.11\n")
        result = build_cli(app, store, index_url, "--output", ctx)
        assert result.code == 2, result.err
        assert str(ctx) in result.err
        assert "Dockerfile" in result.err
        assert (ctx / "Dockerfile").read_text() == "FROM python:3.11\n"
        assert sorted(p.name for p in ctx.iterdir()) == ["Dockerfile"]

    def test_output_onto_a_regular_file_is_a_clear_error(self, tmp_path, index_url, built):
        """A regular file at DIR is named and left as it was, with no traceback."""
        app, store, _ = built
        target = tmp_path / "notes.txt"
        target.write_text("mine\n")
        result = build_cli(app, store, index_url, "--output", target)
        assert result.code == 2
        assert f"{target}: is a file, not a directory" in result.err
        assert "Traceback" not in result.err
        assert target.read_text() == "mine\n"

    def test_output_onto_a_symlink_leaves_the_link_and_its_target(self, tmp_path, index_url, built):
        """A symbolic link at DIR is refused: neither the link nor what it points to is replaced."""
        app, store, _ = built
        real = tmp_path / "real"
        real.mkdir()
        (real / "keep.txt").write_text("keep\n")
        link = tmp_path / "link"
        link.symlink_to(real)
        result = build_cli(app, store, index_url, "--output", link)
        assert result.code == 2
        assert f"{link}: is a symbolic link" in result.err
        assert link.is_symlink()
        assert link.readlink() == real
        assert _tree(real) == {"keep.txt": hashlib.sha256(b"keep\n").hexdigest()}

    def test_files_added_to_a_previous_export_are_kept_and_named(self, tmp_path, index_url, built):
        """A user's file put inside an earlier export stops the replacement and is named."""
        app, store, _ = built
        out = tmp_path / "wh"
        assert build_cli(app, store, index_url, "--output", out).code == 0
        (out / "NOTES.md").write_text("my notes\n")
        before = _tree(out)
        result = build_cli(app, store, index_url, "--output", out)
        assert result.code == 2
        assert "NOTES.md" in result.err
        assert _tree(out) == before


class TestExport:
    def test_export_holds_the_wheels_index_manifest_and_marker(self, tmp_path, index_url, built):
        """A new DIR gets the wheels, the simple/ index, the manifest and a marker with the key."""
        app, store, report = built
        out = tmp_path / "new" / "wh"
        assert build_cli(app, store, index_url, "--output", out).code == 0
        assert consistent(out) == []
        assert len(list(out.glob("*.whl"))) == SMALL
        assert (out / "simple" / "index.html").is_file()
        marker = json.loads((out / MARKER).read_text())
        assert marker["key"] == report["key"]
        assert sorted(p.name for p in out.iterdir()) == sorted(marker["files"] + [MARKER])

    def test_previous_export_is_replaced_by_the_new_wheelhouse(self, tmp_path, index_url, built):
        """Exporting a changed wheelhouse to the same DIR replaces the old export whole."""
        app, store, _ = built
        out = tmp_path / "wh"
        assert build_cli(app, store, index_url, "--output", out).code == 0
        (app / "requirements.txt").write_text(_requirements(LARGE))
        report = build_ok(app, store, index_url, "--output", out)
        assert consistent(out) == []
        assert len(list(out.glob("*.whl"))) == LARGE
        assert json.loads((out / MARKER).read_text())["key"] == report["key"]
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".wh.")] == []

    def test_an_empty_directory_is_filled(self, tmp_path, index_url, built):
        """An empty DIR (made by the user for the purpose) receives the export."""
        app, store, _ = built
        out = tmp_path / "empty"
        out.mkdir()
        assert build_cli(app, store, index_url, "--output", out).code == 0
        assert consistent(out) == []

    def test_export_made_before_markers_existed_is_replaced(self, tmp_path, index_url, built):
        """A marker-less export holding only the manifest's wheels, simple/ and manifest is ours."""
        app, store, report = built
        out = tmp_path / "old"
        house = Path(report["wheelhouse"])
        out.mkdir()
        for path in house.iterdir():
            if path.is_file():
                (out / path.name).write_bytes(path.read_bytes())
        (out / "simple").mkdir()
        (out / "simple" / "index.html").write_text("<html></html>\n")
        assert build_cli(app, store, index_url, "--output", out).code == 0
        assert consistent(out) == []

    def test_a_flipped_byte_in_a_store_blob_is_caught_before_export(
        self, tmp_path, index_url, built
    ):
        """A wheel whose bytes no longer match the manifest stops the export, naming it."""
        app, store, report = built
        out = tmp_path / "wh"
        assert build_cli(app, store, index_url, "--output", out).code == 0
        before = _tree(out)
        wheel = next(
            w
            for w in json.loads(Path(report["wheelhouse"], "wheelhouse.json").read_text())["wheels"]
        )
        blob = Store(store).blob(wheel["sha256"])
        blob.chmod(0o644)
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        from wheelbarrow._core.errors import StoreError
        from wheelbarrow.wheelhouse.export import export_wheelhouse

        with pytest.raises(StoreError) as caught:
            export_wheelhouse(Path(report["wheelhouse"]), out)
        assert wheel["filename"] in str(caught.value)
        assert "sha256" in str(caught.value)
        assert _tree(out) == before
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".wh.")] == []

    def test_leftovers_of_a_killed_export_are_cleaned_by_the_next(self, tmp_path, built):
        """Scratch left beside DIR by an export killed mid-copy is removed by the next export."""
        _, _, report = built
        out = tmp_path / "wh"
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import os, sys, shutil
                    from pathlib import Path
                    import wheelbarrow.wheelhouse.export as export
                    real = shutil.copyfileobj
                    def dying(*args, **kwargs):
                        os._exit(9)
                    export.shutil.copyfileobj = dying
                    export.export_wheelhouse(Path(sys.argv[1]), Path(sys.argv[2]))
                    """
                ),
                report["wheelhouse"],
                str(out),
            ],
            check=False,
        )
        assert killed.returncode == 9
        from wheelbarrow.wheelhouse.export import export_wheelhouse

        left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".wh.")]
        assert left  # the killed run left its scratch entry and lock
        export_wheelhouse(Path(report["wheelhouse"]), out)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".wh.")] == []
        assert consistent(out) == []


_WORKER = """
import json, subprocess, sys
from pathlib import Path
from wheelbarrow.wheelhouse.export import export_lock
sys.path[:0] = [sys.argv[1], str(Path(sys.argv[1]).parent)]  # this file's folder, and support's
from test_export import consistent
apps, store, index, out, rounds, me = sys.argv[2:8]
apps = apps.split(",")
for i in range(int(rounds)):
    app = apps[(i + int(me)) % len(apps)]
    result = subprocess.run(
        [sys.executable, "-m", "wheelbarrow", "build", app, "--store", store, "--index-url",
         index, "--platform", "manylinux_2_28_x86_64", "-q", "--output", out],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        print(f"build failed: {result.stderr}", flush=True)
        sys.exit(1)
    with export_lock(Path(out)):
        problems = consistent(Path(out))
    if problems:
        print(f"inconsistent after export: {problems}", flush=True)
        sys.exit(1)
"""


class TestConcurrentExports:
    def test_many_exports_to_one_directory_leave_it_consistent(self, tmp_path, index_url):
        """Processes exporting a 12- and a 16-wheel wheelhouse to one DIR always leave it whole."""
        store = tmp_path / "store"
        apps = []
        for name, n in (("small", SMALL), ("large", LARGE)):
            app = make_app(tmp_path / name, _requirements(n))
            build_ok(app, store, index_url)
            apps.append(str(app))
        out = tmp_path / "wh"
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    str(Path(__file__).parent),
                    ",".join(apps),
                    str(store),
                    index_url,
                    str(out),
                    "4",
                    str(me),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for me in range(6)
        ]
        outputs = [w.communicate(timeout=120)[0] for w in workers]
        from wheelbarrow.wheelhouse.export import export_lock

        assert [w.returncode for w in workers] == [0] * len(workers), outputs
        with export_lock(out):
            assert consistent(out) == []
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".wh.")] == []

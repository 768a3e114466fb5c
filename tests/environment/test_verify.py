"""`wheelbarrow verify [--repair]`: the whole store checked, what is bad named and removed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import build_cli, cli, make_app
from support.damage import flip_a_byte

from wheelbarrow._core.errors import StoreError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow.environment.seal import make_seal
from wheelbarrow.environment.verify import verify_store
from wheelbarrow.store.store import Store


@pytest.fixture
def installed(tmp_path: Path, local_index) -> tuple[Path, Path, Path]:
    """An app built and installed: (app, store, installed environment)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0", files={"alpha/__init__.py": "VALUE = 42\n"})
    make_wheel(
        d,
        "tool",
        "2.0",
        requires=["alpha"],
        files={"tool/__init__.py": "def main():\n    print('tool ran')\n"},
        entry_points={"tool": "tool:main"},
    )
    index = local_index(d)
    app = make_app(tmp_path / "app", "tool==2.0\n")
    store = tmp_path / "store"
    assert build_cli(app, store, index.url).code == 0
    into = tmp_path / "env"
    # Installed as a clone (hard links): the tests edit the store through it.
    result = cli("install", app, "--store", store, "--into", into, "--link-mode", "hardlink")
    assert result.code == 0, result.err
    return app, store, into


def verify(store: Path, *extra: str) -> tuple[int, dict[str, object]]:
    result = cli("verify", "--store", store, "--json", *extra)
    return result.code, result.json()


def problems(report: dict[str, object]) -> list[tuple[str, str, str]]:
    listed = report["problems"]
    assert isinstance(listed, list)
    return [(p["kind"], p["path"], p["problem"]) for p in listed]


def blob_of(store: Path, name: str) -> Path:
    """The blob a wheelhouse's file is a hard link to."""
    [house] = list((store / "wheelhouses").iterdir())
    inode = (house / name).stat().st_ino
    [blob] = [p for p in (store / "blobs").rglob("*") if p.is_file() and p.stat().st_ino == inode]
    return blob


def store_env(store: Path) -> Path:
    [env] = list((store / "envs").iterdir())
    return env


def site_of(env: Path) -> Path:
    return next(env.glob("lib/python*/site-packages"))


class TestVerify:
    def test_a_sound_store_is_clean(self, tmp_path, installed):
        """After build and install, verify finds nothing, twice, and says what it checked."""
        _, store, _ = installed
        for _ in range(2):
            code, report = verify(store)
            assert code == 0
            assert report["clean"] is True and report["problems"] == []
            assert report["checked"] == {
                "blobs": 2,
                "named": 0,
                "wheelhouses": 1,
                "environments": 1,
            }
        text = cli("verify", "--store", store)
        assert text.code == 0
        assert "Checked 2 blobs, 1 wheelhouse, 1 environment (" in text.out
        assert text.out.rstrip().endswith(": no problems")

    def test_a_flipped_byte_is_reported_and_repaired(self, tmp_path, installed, local_index):
        """A damaged blob is named with its wheelhouse; --repair removes both and the
        environment made from it, and the next build and install make them again."""
        app, store, _ = installed
        blob = blob_of(store, "alpha-1.0-py3-none-any.whl")
        flip_a_byte(blob)
        code, report = verify(store)
        assert code == 1
        found = problems(report)
        rel = blob.relative_to(store).as_posix()
        assert ("blob", rel, found[0][2]) in found
        assert "not its name" in found[0][2]
        assert any(
            kind == "wheelhouse" and path.endswith("/alpha-1.0-py3-none-any.whl")
            for kind, path, _ in found
        )
        text = cli("verify", "--store", store)
        assert text.code == 1
        assert "verify --repair" in text.err
        code, report = verify(store, "--repair")
        assert code == 0
        removed = [r["path"] for r in report["removed"]]  # type: ignore[attr-defined]
        assert rel in removed
        assert any(p.startswith("wheelhouses/") for p in removed)
        assert any(p.startswith("envs/") for p in removed)
        assert not blob.exists()
        assert verify(store)[0] == 0
        index = local_index(tmp_path / "dists")
        assert build_cli(app, store, index.url).code == 0
        again = cli("install", app, "--store", store, "--into", tmp_path / "env-two")
        assert again.code == 0, again.err
        tool = subprocess.run([tmp_path / "env-two" / "bin" / "tool"], capture_output=True)
        assert tool.stdout.strip() == b"tool ran"
        assert verify(store)[0] == 0

    def test_an_edit_through_an_installed_environment_is_named(self, tmp_path, installed):
        """An append through a hard link shows as the store environment's file, changed."""
        app, store, into = installed
        with (site_of(into) / "alpha" / "__init__.py").open("a") as f:
            f.write("VALUE = 0\n")
        code, report = verify(store)
        assert code == 1
        env = store_env(store).relative_to(store).as_posix()
        [(kind, path, problem)] = problems(report)
        assert kind == "environment"
        assert path.startswith(env + "/lib/python") and path.endswith("alpha/__init__.py")
        assert problem == "changed"
        code, report = verify(store, "--repair")
        assert code == 0
        assert [r["path"] for r in report["removed"]] == [env]  # type: ignore[attr-defined]
        result = cli("install", app, "--store", store, "--into", tmp_path / "two", "--json")
        assert result.code == 0, result.err
        assert result.json()["status"] == "built-and-cloned"

    def test_a_seal_written_over_wrong_files_is_caught_by_the_records(self, tmp_path, installed):
        """A file that differs from its RECORD hash is named even when the seal agrees."""
        _, store, _ = installed
        env = store_env(store)
        module = site_of(env) / "alpha" / "__init__.py"
        module.unlink()
        module.write_text("VALUE = 0\n")
        make_seal(env).write(env)
        code, report = verify(store)
        assert code == 1
        [(kind, path, problem)] = problems(report)
        assert kind == "environment" and path.endswith("site-packages/alpha/__init__.py")
        assert problem.startswith("differs from its hash in lib/python")
        assert problem.endswith("/site-packages/alpha-1.0.dist-info/RECORD")

    def test_a_file_missing_from_a_wheelhouse_is_named(self, tmp_path, installed):
        """A wheelhouse that lost a wheel is reported, then removed by --repair."""
        _, store, _ = installed
        [house] = list((store / "wheelhouses").iterdir())
        (house / "tool-2.0-py3-none-any.whl").unlink()
        code, report = verify(store)
        assert code == 1
        rel = house.relative_to(store).as_posix()
        assert problems(report) == [("wheelhouse", f"{rel}/tool-2.0-py3-none-any.whl", "missing")]
        assert verify(store, "--repair")[0] == 0
        assert not house.exists()

    def test_repair_never_touches_anything_outside_the_store(self, tmp_path, installed):
        """A symlink in the store to a directory outside it is removed, never followed."""
        _, store, into = installed
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "precious").write_text("keep\n")
        (site_of(store_env(store)) / "escape").symlink_to(outside)
        code, report = verify(store, "--repair")
        assert code == 0
        assert ("environment", "added") in {(k, p) for k, _, p in problems(report)}
        assert (outside / "precious").read_text() == "keep\n"
        assert (site_of(into) / "alpha" / "__init__.py").read_text() == "VALUE = 42\n"

    def test_progress_counts_every_byte_hashed(self, tmp_path, installed):
        """The reporter is told the bytes as they are hashed, for a bar on long runs."""
        _, store, _ = installed
        reporter = RecordingReporter()
        report = verify_store(Store(store), reporter)
        assert report.hashed_bytes > 0
        assert reporter.bytes_done == report.hashed_bytes

    def test_a_directory_that_is_no_store_is_an_error(self, tmp_path):
        """verify of a missing store says so, with a hint."""
        with pytest.raises(StoreError):
            verify_store(Store(tmp_path / "nothing"), RecordingReporter())
        result = cli("verify", "--store", tmp_path / "nothing")
        assert result.code == 1
        assert "no store here" in result.err

"""An unchanged app's `build`, answered from the record of what its last plan read."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import PLATFORM, build_cli, build_ok, make_app

from wheelbarrow.cli import build, common, noop

ORIGINAL_STAT = os.stat


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """A directory of wheels: alpha 1.0 and 2.0, and beta that needs alpha."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    make_wheel(d, "beta", "1.0", requires=["alpha>=1"])
    return d


def recorded(app: Path, store: Path, url: str, requirements: str) -> dict[str, object]:
    """An app built twice (the first build locks, the second records its inputs); the second's
    JSON report."""
    make_app(app, requirements)
    build_ok(app, store, url)
    report = build_ok(app, store, url)
    assert report["status"] == "up-to-date"
    return report


def without_seconds(report: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in report.items() if k != "seconds"}


class TestShortcut:
    def test_imports_only_what_reading_the_record_needs(self, tmp_path, wheels, local_index):
        """A fresh `build` of an unchanged app loads neither the planner nor packaging, the
        build machinery, the renderer, rich or the network, and prints the full build's lines."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        recorded(app, store, index.url, "beta==1.0\n")
        full = build_cli(app, store, index.url)
        probe = (
            "import sys\n"
            "from wheelbarrow.cli import main\n"
            f"code = main(['build', {str(app)!r}, '--store', {str(store)!r},"
            f" '--index-url', {index.url!r}, '--platform', {PLATFORM!r}])\n"
            "print(sorted(m for m in sys.modules if m in set(sys.argv[1:])))\n"
        )
        unwanted = [
            *(f"wheelbarrow.lock.{m}" for m in ("plan", "lockfile", "options")),
            *(f"wheelbarrow.app.{m}" for m in ("directory", "requirements", "target")),
            *(f"wheelbarrow.wheelhouse.{m}" for m in ("appbuild", "assemble")),
            *(f"wheelbarrow.{m}" for m in ("cli.render", "share.cluster", "store.fetch")),
            *("packaging", "packaging.tags", "tomllib", "dataclasses", "uv"),
            *("httpx", "filelock", "rich", "platformdirs", "s3fs", "hashlib"),
            # standard modules it has no use for, whose import alone costs milliseconds
            *("shutil", "secrets", "random", "threading"),
        ]
        done = subprocess.run(
            [sys.executable, "-c", probe, *unwanted], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout == f"{full.out}[]\n"

    def test_answers_as_the_full_build_in_json_text_and_quiet(self, tmp_path, wheels, local_index):
        """Its JSON report is the full build's (but for the time taken), its text and --quiet
        output the same, and it keeps the wheelhouse's lease fresh for `store gc`."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        full = recorded(app, store, index.url, "beta==1.0\n")
        lease = store / "locks" / "leases" / f"wheelhouse-{full['key']}.lock"
        os.utime(lease, (1, 1))
        short = build_ok(app, store, index.url)
        assert without_seconds(short) == without_seconds(full)
        assert lease.stat().st_mtime > 1
        text = build_cli(app, store, index.url)
        assert (text.code, text.err) == (0, "")
        assert text.out == (
            f"Wheelhouse {full['key']} is up to date (2 packages): nothing to do\n"
            f"  {full['wheelhouse']}\n"
        )
        quiet = build_cli(app, store, index.url, "--quiet")
        assert (quiet.code, quiet.out, quiet.err) == (0, "", "")

    def test_an_edited_pin_is_built(self, tmp_path, wheels, local_index):
        """A changed requirements.txt is seen: the build locks again and fetches the new pin."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        before = recorded(app, store, index.url, "alpha==1.0\n")
        (app / "requirements.txt").write_text("alpha==2.0\n")
        after = build_ok(app, store, index.url)
        assert after["status"] == "built" and after["key"] != before["key"]
        assert after["fetched"] == ["alpha-2.0-py3-none-any.whl"]

    def test_an_edited_included_file_is_built(self, tmp_path, wheels, local_index):
        """A file that requirements.txt includes (-r) counts as the plan read it."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        (tmp_path / "shared.txt").write_text("alpha==1.0\n")
        before = recorded(app, store, index.url, "-r ../shared.txt\n")
        (tmp_path / "shared.txt").write_text("alpha==2.0\n")
        after = build_ok(app, store, index.url)
        assert after["key"] != before["key"]

    def test_an_environment_variable_the_requirements_use_is_read_again(
        self, tmp_path, wheels, local_index, monkeypatch
    ):
        """A ${VARIABLE} of requirements.txt counts: a new value plans anew."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        monkeypatch.setenv("ALPHA_PIN", "1.0")
        before = recorded(app, store, index.url, "alpha==${ALPHA_PIN}\n")
        monkeypatch.setenv("ALPHA_PIN", "2.0")
        after = build_ok(app, store, index.url)
        assert after["key"] != before["key"]

    def test_a_file_only_looked_for_counts(self, tmp_path, wheels, local_index):
        """A new file in the app that planning only looks for (a Pipfile beside requirements.txt)
        is seen: the full build refuses two package managers."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        recorded(app, store, index.url, "alpha==1.0\n")
        (app / "Pipfile").write_text("")
        result = build_cli(app, store, index.url)
        assert result.code != 0
        assert "more than one package manager" in result.err

    def test_a_removed_wheelhouse_is_laid_out_again(self, tmp_path, wheels, local_index):
        """A wheelhouse gone from the store (gc) is made again from the stored wheels."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        before = recorded(app, store, index.url, "beta==1.0\n")
        shutil.rmtree(before["wheelhouse"])
        after = build_ok(app, store, index.url)
        assert after["status"] == "built" and after["key"] == before["key"]
        assert Path(after["wheelhouse"], "wheelhouse.json").is_file()

    def test_other_options_and_exports_take_the_full_build(self, tmp_path, wheels, local_index):
        """Other options plan afresh (--no-binary finds no source to build), and --output
        exports every time."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        recorded(app, store, index.url, "beta==1.0\n")
        other = build_cli(app, store, index.url, "--no-binary", "alpha")
        assert other.code != 0
        assert "no-binary asks for a source build" in other.err
        out = tmp_path / "out"
        build_ok(app, store, index.url, "--output", out)
        assert sorted(p.name for p in out.glob("*.whl")) == [
            "alpha-2.0-py3-none-any.whl",
            "beta-1.0-py3-none-any.whl",
        ]

    def test_a_plan_that_warns_warns_every_time(self, tmp_path, wheels, local_index):
        """A plan that says something (no requirements at all) is never recorded: the third
        build still says it."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        recorded(app, store, index.url, "# nothing yet\n")
        third = build_cli(app, store, index.url)
        assert third.code == 0
        assert "lists no requirements" in third.err


class TestInputs:
    def test_the_digest_follows_files_listings_variables_options_and_code(
        self, tmp_path, monkeypatch
    ):
        """Each kind of input changes the digest: a file's bytes, a directory's names, a
        variable's value, an option, the size or time of a module."""
        wanted, listed, module = tmp_path / "req.txt", tmp_path / "dir", tmp_path / "mod.py"
        wanted.write_text("a\n")
        listed.mkdir()
        module.write_text("")
        args = argparse.Namespace(app=str(tmp_path), python=None, json=False)
        inputs = {
            "files": (str(wanted),),
            "dirs": (str(listed),),
            "env": ("WB_TEST_NOOP",),
            "code": [str(module)],
        }
        seen = {noop._digest(args, **inputs)}
        wanted.write_text("b\n")
        seen.add(noop._digest(args, **inputs))
        (listed / "new").write_text("")
        seen.add(noop._digest(args, **inputs))
        monkeypatch.setenv("WB_TEST_NOOP", "1")
        seen.add(noop._digest(args, **inputs))
        seen.add(noop._digest(argparse.Namespace(app=str(tmp_path), python="3.12"), **inputs))
        os.utime(module, ns=(1, 1))
        seen.add(noop._digest(args, **inputs))
        assert len(seen) == 6
        # How the answer is shown is not an input.
        shown = argparse.Namespace(app=str(tmp_path), python=None, json=True)
        assert noop._digest(shown, **inputs) == noop._digest(args, **inputs)

    def test_a_watch_sees_reads_and_not_imports_and_refuses_what_acts(self, tmp_path):
        """Files opened or looked up and directories listed are inputs, the files of modules
        imported are not; a file written or a process started makes the plan unrecordable."""
        read, probed, listed = tmp_path / "read.txt", tmp_path / "probed", tmp_path / "listed"
        read.write_text("x")
        listed.mkdir()
        sys.modules.pop("wheelbarrow.cli.dockerfile", None)
        args = argparse.Namespace(app=str(tmp_path))
        with noop.watching({"SEEN": "1"}) as watch:
            read.read_text()
            assert not probed.exists()
            list(listed.iterdir())
            assert watch.environ.get("SEEN") == "1"
            import wheelbarrow.cli.dockerfile  # noqa: F401
        inputs = noop.inputs_of(watch, args)
        assert inputs is not None
        assert set(inputs.files) == {str(read), str(probed)}
        assert set(inputs.dirs) == {str(listed), str(tmp_path)}
        assert "SEEN" in inputs.env
        before = noop._digest(args, files=inputs.files, dirs=(), env=(), code=())
        probed.mkdir()  # what was looked up and missing is there now: another digest
        assert noop._digest(args, files=inputs.files, dirs=(), env=(), code=()) != before
        with noop.watching({}) as writing:
            (tmp_path / "written").write_text("x")
        assert noop.inputs_of(writing, args) is None
        with noop.watching({}) as running:
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        assert noop.inputs_of(running, args) is None

    def test_what_another_thread_changes_after_the_plan_read_it_is_not_recorded(self, tmp_path):
        """A file read, then removed; a file looked for, then made; a directory listed, then
        given an entry; a file read, then written in place with the same size: each by
        another thread after the plan's read leaves no inputs, and nothing changed does."""
        read, looked, listed = tmp_path / "read.txt", tmp_path / "looked", tmp_path / "listed"
        args = argparse.Namespace(app=str(tmp_path))

        def plan_then(change: Callable[[], object]) -> noop.Inputs | None:
            read.write_text("x")
            looked.unlink(missing_ok=True)
            shutil.rmtree(listed, ignore_errors=True)
            listed.mkdir()
            with noop.watching({}) as watch:
                read.read_text()
                looked.exists()
                list(listed.iterdir())
                other = threading.Thread(target=change)
                other.start()
                other.join()
            return noop.inputs_of(watch, args)

        assert plan_then(lambda: None) is not None
        assert plan_then(read.unlink) is None
        assert plan_then(lambda: looked.write_text("")) is None
        assert plan_then(lambda: (listed / "new").mkdir()) is None
        assert plan_then(lambda: read.write_text("y")) is None

    def test_a_directory_only_looked_up_may_change_meanwhile(self, tmp_path):
        """A directory the plan only looked up (as resolving a path looks up /tmp) counts as a
        directory, not by what it holds: another process's new file there keeps the record."""
        shared = tmp_path / "shared"
        shared.mkdir()
        with noop.watching({}) as watch:
            assert shared.is_dir()
            other = threading.Thread(target=(shared / "someone-elses").write_text, args=("x",))
            other.start()
            other.join()
        assert noop.inputs_of(watch, argparse.Namespace(app=str(tmp_path))) is not None

    def test_watches_of_two_threads_see_their_own_reads(self, tmp_path):
        """Two plans watched at once in two threads each record what they read, not the
        other's; os.stat is itself again when neither watches."""
        paths = [tmp_path / f"{n}.txt" for n in ("one", "two")]
        for path in paths:
            path.write_text("x")
        started, seen = threading.Barrier(2), {}

        def plan(path: Path) -> None:
            with noop.watching({}) as watch:
                started.wait()
                path.read_text()
                path.exists()
                started.wait()
            seen[path] = watch.files | watch.probed

        threads = [threading.Thread(target=plan, args=(p,)) for p in paths]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == {p: {str(p)} for p in paths}
        assert os.stat is ORIGINAL_STAT

    def test_the_copied_names_are_the_originals(self):
        """The names kept here to import less are those of the modules they come from."""
        from wheelbarrow.share.cluster import CLUSTER_ENV_VAR
        from wheelbarrow.store.store import STORE_ENV_VAR
        from wheelbarrow.wheelhouse.assemble import MANIFEST

        assert noop.MANIFEST == MANIFEST
        assert build.CLUSTER_ENV_VAR == CLUSTER_ENV_VAR
        assert common.STORE_ENV_VAR == STORE_ENV_VAR

    def test_a_record_of_another_key_is_left_alone(self, tmp_path):
        """Inputs are added only to a record that names their key (no later build wrote it)."""
        record = tmp_path / "app.json"
        record.write_text(json.dumps({"app": "/x", "key": "other"}))
        inputs = noop.Inputs(files=(), dirs=(), env=(), code=(), digest="d")
        noop.remember(record, inputs, key="mine", packages=1, target={})
        assert json.loads(record.read_text()) == {"app": "/x", "key": "other"}
        noop.remember(record, inputs, key="other", packages=1, target={})
        assert json.loads(record.read_text())["noop"]["digest"] == "d"


class TestRaces:
    @pytest.mark.parametrize("edit", ["alpha==2.0\n", "alpha==2.0  # newer pin\n"])
    def test_a_file_edited_while_the_plan_runs_is_not_recorded_as_read(
        self, tmp_path, wheels, local_index, monkeypatch, edit
    ):
        """A requirements file saved by another process after the plan read it, before the
        build digested its inputs (with the same size or another), leaves no record of the new
        bytes: the next build plans them and fetches the new pin, not up to date."""
        index = local_index(wheels)
        app, store = tmp_path / "app", tmp_path / "store"
        make_app(app, "alpha==1.0\n")
        first = build_ok(app, store, index.url)  # locks
        planning = common.plan

        def plan_then_saved_elsewhere(*args: object, **kwargs: object) -> object:
            planned = planning(*args, **kwargs)
            # Another thread is another process for the watch: not the plan's own write.
            saver = threading.Thread(target=(app / "requirements.txt").write_text, args=(edit,))
            saver.start()
            saver.join()
            return planned

        monkeypatch.setattr(common, "plan", plan_then_saved_elsewhere)
        racy = build_ok(app, store, index.url)
        assert racy["key"] == first["key"]  # planned from alpha 1.0, as read
        monkeypatch.setattr(common, "plan", planning)
        after = build_ok(app, store, index.url)
        assert after["status"] == "built" and after["key"] != first["key"]
        assert after["fetched"] == ["alpha-2.0-py3-none-any.whl"]

"""`wheelbarrow store du|gc`: what takes the store's space, and removing what nothing needs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import build_local_index, make_build_helper_sdist, make_dependent_sdist, make_wheel
from support.apps import PLATFORM, build_ok, cli, make_app

from wheelbarrow._core.errors import InputError
from wheelbarrow.share.serve import make_server
from wheelbarrow.store.store import Store

DAY = 86400.0


@pytest.fixture
def index_url(tmp_path, local_index):
    """A local index: alpha 1.0 and 2.0, beta 1.0 (needs alpha), gamma 1.0."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "alpha", "2.0")
    make_wheel(d, "beta", "1.0", requires=["alpha"])
    make_wheel(d, "gamma", "1.0")
    return local_index(d).url


def gc(store: Path, *args: str) -> dict[str, Any]:
    """``store gc --json`` that must succeed."""
    result = cli("store", "gc", "--store", store, "--json", *args)
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def du(store: Path) -> dict[str, Any]:
    """``store du --json`` that must succeed."""
    result = cli("store", "du", "--store", store, "--json")
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def install(app: Path, store: Path, into: Path) -> dict[str, Any]:
    """``install --json`` that must succeed (as a clone: a shared environment keeps what it
    runs on, which test_dependents.py tests)."""
    result = cli(
        "install", app, "--store", store, "--into", into, "--json", "--link-mode", "hardlink"
    )
    assert result.code == 0, result.err
    report: dict[str, Any] = result.json()
    return report


def verified(store: Path) -> None:
    """``wheelbarrow verify`` finds nothing wrong with the store."""
    result = cli("verify", "--store", store)
    assert result.code == 0, result.out + result.err


def imports(env: Path, module: str) -> str:
    """The ``__version__`` of ``module`` imported in the environment ``env``."""
    done = subprocess.run(
        [env / "bin" / "python", "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def removed(report: dict[str, Any], kind: str) -> set[str]:
    """The names of the entries of ``kind`` a gc report removed."""
    return {r["name"] for r in report["removed"] if r["kind"] == kind}


def age(store: Path, kind: str, key: str, days: float) -> None:
    """Make an entry look last made and last used ``days`` ago (its files and its lease)."""
    when = time.time() - days * DAY
    root = {"wheelhouse": "wheelhouses", "env": "envs"}[kind]
    entry = store / root / key
    for path in [entry, *entry.iterdir()]:
        os.utime(path, (when, when), follow_symlinks=False)
    lease = store / "locks" / "leases" / f"{kind}-{key}.lock"
    if lease.exists():
        os.utime(lease, (when, when))


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the sha256 of its bytes (or its kind)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = "link " + str(path.readlink())
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "dir"
    return found


@pytest.fixture
def two_builds(tmp_path, index_url):
    """An app built and installed with alpha 1.0, then with alpha 2.0: (app, store, old, new)."""
    store = tmp_path / "store"
    app = make_app(tmp_path / "app", "alpha==1.0\nbeta==1.0\n")
    old = build_ok(app, store, index_url)
    old_env = install(app, store, tmp_path / "env1")
    (app / "requirements.txt").write_text("alpha==2.0\nbeta==1.0\n")
    new = build_ok(app, store, index_url)
    new_env = install(app, store, tmp_path / "env2")
    return app, store, (old, old_env), (new, new_env)


def _blob_of(report: dict[str, Any], filename: str) -> str:
    manifest = json.loads((Path(report["wheelhouse"]) / "wheelhouse.json").read_text())
    return next(w["sha256"] for w in manifest["wheels"] if w["filename"] == filename)


class TestParse:
    def test_durations_take_a_unit(self):
        """45s, 30m, 12h, 7d, 2w and 0 are durations, in seconds."""
        from wheelbarrow.store.gc import parse_duration

        assert [parse_duration(t) for t in ("45s", "30m", "12h", "7d", "2w", "0", "1.5h")] == [
            45,
            1800,
            43200,
            7 * DAY,
            14 * DAY,
            0,
            5400,
        ]

    def test_a_bad_duration_is_named(self):
        """A duration without a unit or with an unknown one is an error naming the option."""
        from wheelbarrow.store.gc import parse_duration

        for text in ("7", "soon", "3y", "-1d"):
            with pytest.raises(InputError, match=rf"--older-than '{text}': not a duration"):
                parse_duration(text)

    def test_sizes_are_read_as_they_are_shown(self):
        """500M, 2G, 1.5GB and 100kB are powers of 1000 (as reports show sizes), GiB of 1024."""
        from wheelbarrow.store.gc import parse_size

        sizes = ("500M", "2G", "1.5GB", "100kB", "4096", "1GiB", "2 MiB", "7b")
        assert [parse_size(t) for t in sizes] == [
            500 * 10**6,
            2 * 10**9,
            15 * 10**8,
            100 * 10**3,
            4096,
            1 << 30,
            2 << 20,
            7,
        ]

    def test_the_cli_reports_a_bad_limit_without_a_traceback(self, tmp_path):
        """`store gc --max-size lots` exits 2 naming the option, with a hint."""
        result = cli("store", "gc", "--store", tmp_path / "store", "--max-size", "lots")
        assert result.code == 2
        assert "--max-size 'lots': not a size" in result.err
        assert "hint: " in result.err
        assert "Traceback" not in result.err


class TestUsage:
    def test_hard_links_are_counted_once(self, two_builds):
        """The total is the store's distinct files; wheelhouses' links to blobs count as blobs."""
        _, store, (old, _), (new, _) = two_builds
        report = du(store)
        inodes = {}
        for path in [store, *store.rglob("*")]:
            st = path.lstat()
            inodes[(st.st_dev, st.st_ino)] = st.st_blocks * 512
        assert report["bytes"] == sum(inodes.values())
        assert sum(k["bytes"] for k in report["kinds"]) == report["bytes"]
        kinds = {k["kind"]: k for k in report["kinds"]}
        blobs = [p for p in (store / "blobs").rglob("*") if p.is_file()]
        assert kinds["blobs"]["entries"] == len(blobs) == 3  # alpha 1.0, alpha 2.0, beta 1.0
        assert kinds["blobs"]["bytes"] == sum(p.lstat().st_blocks * 512 for p in blobs)
        # A wheelhouse's own space is its index and manifest: its wheels are the blobs.
        own = [
            path
            for house in (old["wheelhouse"], new["wheelhouse"])
            for path in [Path(house), *Path(house).rglob("*")]
            if path.suffix != ".whl"
        ]
        assert kinds["wheelhouses"]["entries"] == 2
        assert kinds["wheelhouses"]["bytes"] == sum(p.lstat().st_blocks * 512 for p in own)
        assert kinds["environments"]["entries"] == 2

    def test_each_app_shows_its_last_wheelhouse_and_environments(self, two_builds):
        """By app: the app's directory, its last wheelhouse and the environments made from it."""
        app, store, _, (new, new_env) = two_builds
        (entry,) = du(store)["apps"]
        assert entry["app"] == str(app)
        assert entry["app_present"] is True
        assert entry["wheelhouse"] == new["key"]
        assert entry["wheelhouse_present"] is True
        assert entry["environments"] == [new_env["env_key"]]
        assert entry["bytes"] > 0

    def test_files_a_user_put_in_the_store_are_listed_apart(self, two_builds):
        """A file at the store's root that wheelbarrow does not make is listed as not its own."""
        _, store, _, _ = two_builds
        (store / "notes.txt").write_text("mine\n")
        report = du(store)
        assert [e["path"] for e in report["not_wheelbarrows"]] == [str(store / "notes.txt")]
        text = cli("store", "du", "--store", store)
        assert text.code == 0
        assert "Not made by wheelbarrow (store gc never touches them):" in text.out
        assert "  notes.txt: " in text.out

    def test_the_stores_own_bills_of_materials_are_its_own(self, two_builds):
        """The SBOMs `wheelbarrow sbom` and the image keep in the store count as theirs, not
        as files a user put there."""
        app, store, _, _ = two_builds
        made = cli("sbom", app, "--store", store)
        assert made.code == 0, made.err
        (store / "oci" / "sbom").mkdir(parents=True, exist_ok=True)
        (store / "oci" / "sbom" / f"{'a' * 64}.cdx.json").write_text("{}")
        report = du(store)
        assert report["not_wheelbarrows"] == []
        kinds = {k["kind"]: k["bytes"] for k in report["kinds"]}
        assert kinds["bills of materials"] > 0

    def test_the_text_report_lists_every_kind_and_app(self, two_builds):
        """The human report has one line per kind and one per app."""
        app, store, _, (new, _) = two_builds
        text = cli("store", "du", "--store", store)
        assert text.code == 0, text.err
        from wheelbarrow.store.du import KINDS

        lines = text.out.splitlines()
        assert lines[0].startswith(f"Store {store}: ")
        assert [line.split()[0] for line in lines[1 : 1 + len(KINDS)]] == [
            k.split()[0] for k in KINDS
        ]
        assert f"  {app}: wheelhouse {new['key']}, 1 environment, " in text.out

    def test_an_empty_store_is_reported_empty(self, tmp_path):
        """A store that does not exist yet takes no space."""
        report = du(tmp_path / "nothing")
        assert report["bytes"] == 0
        assert report["apps"] == []


class TestGc:
    def test_keeps_the_apps_last_build_and_removes_the_rest(self, tmp_path, index_url, two_builds):
        """With no age limit, only what the app's last build needs stays, and it still works."""
        app, store, (old, old_env), (new, new_env) = two_builds
        alpha_1 = _blob_of(old, "alpha-1.0-py3-none-any.whl")
        report = gc(store, "--older-than", "0")
        assert removed(report, "wheelhouse") == {old["key"]}
        assert removed(report, "environment") == {old_env["env_key"]}
        assert removed(report, "blob") == {alpha_1}
        assert report["freed_bytes"] > 0
        assert report["size_after"] == du(store)["bytes"]
        assert Path(new["wheelhouse"], "wheelhouse.json").is_file()
        assert (store / "envs" / new_env["env_key"]).is_dir()
        verified(store)
        assert build_ok(app, store, index_url)["status"] == "up-to-date"
        again = install(app, store, tmp_path / "env3")
        assert again["status"] == "cloned"
        assert imports(tmp_path / "env3", "alpha") == "2.0"

    def test_bills_of_materials_go_by_age_and_are_made_again(self, two_builds):
        """A kept SBOM is a cache: gc removes it by age like any unused entry (a user's file
        beside it stays), and the next `wheelbarrow sbom` makes the same document again."""
        app, store, _, _ = two_builds
        first = cli("sbom", app, "--store", store)
        assert first.code == 0, first.err
        (cached,) = (store / "sbom").glob("*.cdx.json")
        image_sbom = store / "oci" / "sbom" / f"{'b' * 64}.cdx.json"
        image_sbom.parent.mkdir(parents=True)
        image_sbom.write_text("{}")
        mine = store / "sbom" / "notes.txt"
        mine.write_text("mine\n")
        assert removed(gc(store), "sbom") == set()  # made just now
        assert removed(gc(store, "--older-than", "0"), "sbom") == {
            f"sbom/{cached.name}",
            f"oci/sbom/{image_sbom.name}",
        }
        assert not cached.exists() and not image_sbom.exists()
        assert mine.read_text() == "mine\n"
        again = cli("sbom", app, "--store", store)
        assert again.code == 0, again.err
        assert again.out == first.out
        assert cached.exists()

    def test_a_bill_of_materials_read_this_week_is_kept(self, two_builds):
        """Reading a kept SBOM is using it: one made ten days ago and read again now stays,
        as the wheelhouse it describes does, for the next week."""
        app, store, _, _ = two_builds
        first = cli("sbom", app, "--store", store)
        assert first.code == 0, first.err
        (cached,) = (store / "sbom").glob("*.cdx.json")
        when = time.time() - 10 * DAY
        os.utime(cached, (when, when))
        again = cli("sbom", app, "--store", store)  # read from the cache
        assert again.code == 0 and again.out == first.out, again.err
        assert removed(gc(store), "sbom") == set()
        assert cached.exists()

    def test_the_default_keeps_what_was_used_this_week(self, two_builds):
        """Without limits gc keeps everything used in the last 7 days."""
        _, store, _, _ = two_builds
        before = snapshot(store / "wheelhouses")
        report = gc(store)
        assert [r for r in report["removed"] if r["kind"] != "scratch"] == []
        assert snapshot(store / "wheelhouses") == before

    def test_age_counts_from_the_last_use_not_the_creation(self, two_builds):
        """An old wheelhouse that an install held recently is kept; once unused it goes."""
        _, store, (old, _), _ = two_builds
        age(store, "wheelhouse", old["key"], 10)
        with Store(store).use("wheelhouse", old["key"]):  # what an install of it does
            pass
        assert removed(gc(store), "wheelhouse") == set()
        age(store, "wheelhouse", old["key"], 10)
        assert removed(gc(store), "wheelhouse") == {old["key"]}

    def test_dry_run_lists_what_would_go_and_removes_nothing(self, two_builds):
        """--dry-run names every entry and the space it frees, and leaves the store as it was."""
        _, store, _, _ = two_builds
        before = snapshot(store)
        dry = gc(store, "--older-than", "0", "--dry-run")
        assert dry["dry_run"] is True
        assert snapshot(store) == before
        real = gc(store, "--older-than", "0")
        assert {(r["kind"], r["name"]) for r in dry["removed"]} == {
            (r["kind"], r["name"]) for r in real["removed"]
        }
        assert dry["freed_bytes"] == real["freed_bytes"] > 0
        text = cli("store", "gc", "--store", store, "--older-than", "0", "--dry-run")
        assert text.code == 0
        assert text.out.startswith("Would remove nothing: 0 B would free")

    def test_max_size_removes_the_least_recently_used_first(self, tmp_path, index_url):
        """Over --max-size, the oldest entries go first, and the app's last build always stays."""
        store = tmp_path / "store"
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        first = build_ok(app, store, index_url)
        (app / "requirements.txt").write_text("beta==1.0\nalpha==1.0\n")
        second = build_ok(app, store, index_url)
        (app / "requirements.txt").write_text("gamma==1.0\n")
        last = build_ok(app, store, index_url)
        age(store, "wheelhouse", first["key"], 3)
        age(store, "wheelhouse", second["key"], 1)
        size = du(store)["bytes"]
        report = gc(store, "--max-size", str(size - 1))
        assert removed(report, "wheelhouse") == {first["key"]}
        blobs = {
            _blob_of(second, "alpha-1.0-py3-none-any.whl"),
            _blob_of(second, "beta-1.0-py3-none-any.whl"),
        }
        report = gc(store, "--max-size", "0")
        assert removed(report, "wheelhouse") == {second["key"]}
        assert sorted(p.name for p in (store / "wheelhouses").iterdir()) == [last["key"]]
        assert removed(report, "blob") == blobs
        assert report["size_after"] > 0

    def test_a_removed_apps_record_goes_once_older_than_the_limit(self, tmp_path, index_url):
        """An app whose directory is gone keeps its last build only until that is old."""
        store = tmp_path / "store"
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        report = build_ok(app, store, index_url)
        shutil.rmtree(app)
        assert removed(gc(store), "wheelhouse") == set()
        (record,) = (store / "apps").iterdir()
        when = time.time() - 10 * DAY
        os.utime(record, (when, when))
        age(store, "wheelhouse", report["key"], 10)
        result = gc(store)
        assert removed(result, "app") == {record.stem}
        assert removed(result, "wheelhouse") == {report["key"]}
        assert du(store)["apps"] == []

    def test_the_build_cache_of_the_last_build_is_kept(self, tmp_path, local_index):
        """Source-built wheels of the last build keep their build cache and build environments."""
        d = tmp_path / "d"
        make_build_helper_sdist(d)
        make_dependent_sdist(d)
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        store = tmp_path / "store"
        app = make_app(tmp_path / "app", "dependent==1.0\n")
        build_ok(app, store, index.url)
        built = sorted(p.name for p in (store / "built").iterdir())
        build_envs = sorted(p.name for p in (store / "envs").glob("build-*"))
        assert build_envs
        dependent = next(
            k
            for k in built
            if json.loads((store / "built" / k / "result.json").read_text())["wheel"].startswith(
                "dependent-"
            )
        )
        report = gc(store, "--older-than", "0")
        assert removed(report, "wheelhouse") == set()
        kept_builds = {p.name for p in (store / "built").iterdir()}
        assert dependent in kept_builds
        log = (store / "built" / dependent / "build.log").read_text()
        used_env = next(e for e in build_envs if f"/envs/{e}/" in log)
        assert (store / "envs" / used_env).is_dir()
        # Nothing needs rebuilding after gc: the build cache answers.
        shutil.rmtree(store / "wheelhouses")
        again = build_ok(app, store, index.url)
        assert [b["reused"] for b in again["built"]] == [True]
        # Once the app needs no source build, gc removes the build cache too.
        (app / "requirements.txt").write_text("alpha==1.0\n")
        build_ok(app, store, index.url)
        report = gc(store, "--older-than", "0")
        assert dependent in removed(report, "build")
        assert used_env in removed(report, "build-environment")
        assert list((store / "envs").glob("build-*")) == []
        verified(store)

    def test_a_build_keeps_the_build_environment_its_result_records(self, tmp_path, local_index):
        """The build environment a kept build ran in is the one its result.json names, whatever
        its log says."""
        d = tmp_path / "d"
        make_build_helper_sdist(d)
        make_dependent_sdist(d)
        store = tmp_path / "store"
        app = make_app(tmp_path / "app", "dependent==1.0\n")
        build_ok(app, store, local_index(d).url)
        results = [json.loads(p.read_text()) for p in (store / "built").glob("*/result.json")]
        [recorded] = [r["build_env"] for r in results if r["wheel"].startswith("dependent-")]
        assert (store / "envs" / recorded).is_dir()
        for log in (store / "built").glob("*/build.log"):
            log.write_text("# a log that names no environment\n")
        gc(store, "--older-than", "0")
        assert (store / "envs" / recorded).is_dir()

    def test_files_a_user_put_in_the_store_are_never_touched(self, two_builds):
        """User files at the root and among the store's entries survive gc byte for byte."""
        _, store, _, _ = two_builds
        (store / "notes.txt").write_text("mine\n")
        (store / "mine").mkdir()
        (store / "mine" / "data.bin").write_bytes(b"\0" * 100)
        (store / "wheelhouses" / "README.txt").write_text("my wheelhouses\n")
        (store / "envs" / "my-env").mkdir()
        (store / "envs" / "my-env" / "x").write_text("x\n")
        (store / "blobs" / "sha256" / "ab").mkdir(parents=True, exist_ok=True)
        (store / "blobs" / "sha256" / "ab" / "not-a-digest").write_text("y\n")
        (store / "apps" / "mine.json").write_text("{}\n")
        mine = [
            "notes.txt",
            "mine",
            "mine/data.bin",
            "wheelhouses/README.txt",
            "envs/my-env",
            "envs/my-env/x",
            "blobs/sha256/ab/not-a-digest",
            "apps/mine.json",
        ]
        before = snapshot(store)
        report = gc(store, "--older-than", "0", "--max-size", "0")
        assert report["removed"]
        after = snapshot(store)
        assert {p: after.get(p) for p in mine} == {p: before[p] for p in mine}
        assert not any(r["path"].endswith(tuple(mine)) for r in report["removed"])

    def test_scratch_left_by_a_killed_run_is_removed_and_live_scratch_kept(self, two_builds):
        """Stale scratch in tmp/ goes; the scratch of a running process stays."""
        _, store, _, _ = two_builds
        code = textwrap.dedent(
            """
            import os, sys
            from pathlib import Path
            from wheelbarrow.store.store import Store
            with Store(Path(sys.argv[1])).scratch("sources-") as work:
                (work / "half").write_text("half-written")
                os._exit(9)
            """
        )
        done = subprocess.run([sys.executable, "-c", code, str(store)], check=False)
        assert done.returncode == 9
        (stale,) = [
            p for p in (store / "tmp").iterdir() if p.name.startswith("sources-") and p.is_dir()
        ]
        with Store(store).scratch("env-") as live:
            report = gc(store, "--dry-run")
            assert {r["name"] for r in report["removed"] if r["kind"] == "scratch"} == {stale.name}
            report = gc(store)
            assert {r["name"] for r in report["removed"] if r["kind"] == "scratch"} == {stale.name}
            assert not stale.exists()
            assert live.is_dir()


class TestGcLeases:
    def test_a_wheelhouse_being_served_is_kept(self, tmp_path, index_url):
        """`wheelbarrow serve` leases what it serves: a gc while it runs keeps that wheelhouse
        even once the app's last build is another one."""
        from support.net import free_port

        store = tmp_path / "store"
        app = make_app(tmp_path / "app", "alpha==1.0\n")
        served = build_ok(app, store, index_url)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "wheelbarrow", "serve", str(app), "--store", str(store),
             "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None and "Serving" in server.stdout.readline()
            (app / "requirements.txt").write_text("alpha==2.0\n")
            build_ok(app, store, index_url)
            report = gc(store, "--older-than", "0")
            assert served["key"] not in removed(report, "wheelhouse")
            assert (Path(served["wheelhouse"]) / "wheelhouse.json").is_file()
        finally:
            server.terminate()
            server.wait(timeout=30)
            assert server.stdout is not None
            server.stdout.close()
        report = gc(store, "--older-than", "0")
        assert served["key"] in removed(report, "wheelhouse")

    def test_an_entry_a_running_install_holds_is_kept(self, two_builds):
        """A wheelhouse and an environment under a shared lease survive gc until it is released."""
        _, store, (old, old_env), _ = two_builds
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sys
                    from pathlib import Path
                    from wheelbarrow.store.store import Store
                    store = Store(Path(sys.argv[1]))
                    with store.use("wheelhouse", sys.argv[2]), store.use("env", sys.argv[3]):
                        print("held", flush=True)
                        sys.stdin.readline()
                    """
                ),
                str(store),
                old["key"],
                old_env["env_key"],
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            report = gc(store, "--older-than", "0")
            assert removed(report, "wheelhouse") == set()
            assert removed(report, "environment") == set()
            kept = {(k["kind"], k["name"]): k["why"] for k in report["kept"]}
            assert kept[("wheelhouse", old["key"])] == "in use by a running build or install"
            assert (
                kept[("environment", old_env["env_key"])] == "in use by a running build or install"
            )
            # Its blobs are still referenced by the wheelhouse that stays.
            assert Store(store).has(_blob_of(old, "alpha-1.0-py3-none-any.whl"))
        finally:
            holder.communicate("\n", timeout=30)
        report = gc(store, "--older-than", "0")
        assert removed(report, "wheelhouse") == {old["key"]}
        assert removed(report, "environment") == {old_env["env_key"]}

    def test_blobs_a_build_fetched_before_its_manifest_exists_are_kept(self, tmp_path):
        """gc during a build's downloads leaves the blobs it fetched; the build then completes."""
        store = tmp_path / "store"
        app = make_app(tmp_path / "app", "beta==1.0\ngamma==1.0\n")
        files = tmp_path / "gated"
        make_wheel(files, "alpha", "2.0")
        make_wheel(files, "beta", "1.0", requires=["alpha"])
        make_wheel(files, "gamma", "1.0")
        build_local_index(files)
        gate, armed, waiting = threading.Event(), threading.Event(), threading.Event()

        def hold_gamma(method: str, path: str) -> None:
            if armed.is_set() and path.endswith("gamma-1.0-py3-none-any.whl"):
                waiting.set()
                gate.wait(60)

        with make_server(files, "127.0.0.1", 0, request_log=hold_gamma) as server:
            url = server.simple_url
            assert cli("lock", app, "--index-url", url, "--platform", PLATFORM).code == 0
            armed.set()
            build = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "wheelbarrow",
                    "build",
                    app,
                    "--store",
                    store,
                    "--index-url",
                    url,
                    "--platform",
                    PLATFORM,
                    "--json",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                assert waiting.wait(60)
                deadline = time.monotonic() + 30
                blobs = store / "blobs" / "sha256"
                while len([p for p in blobs.rglob("*") if p.is_file()]) < 2:
                    assert time.monotonic() < deadline, "the build fetched nothing"
                    time.sleep(0.05)
                fetched = sorted(p for p in blobs.rglob("*") if p.is_file())
                report = gc(store, "--older-than", "0")
                assert report["swept_build_cache"] is False
                assert all(p.is_file() for p in fetched)
                text = cli("store", "gc", "--store", store, "--older-than", "0")
                assert "A build was running" in text.out
            finally:
                gate.set()
                out, err = build.communicate(timeout=60)
            assert build.returncode == 0, err
            assert json.loads(out)["status"] == "built"
        install(app, store, tmp_path / "env")
        assert imports(tmp_path / "env", "gamma") == "1.0"


class TestGcKilled:
    def test_a_killed_gc_leaves_nothing_half_removed(self, tmp_path, index_url, two_builds):
        """gc killed between two removals leaves whole entries only; the next run finishes."""
        app, store, (old, _), _ = two_builds
        code = textwrap.dedent(
            """
            import os, sys, time
            from pathlib import Path
            from wheelbarrow.store import gc
            from wheelbarrow.store.store import Store
            real, count = Path.rename, [0]
            def dying(self, target):
                count[0] += 1
                if count[0] == 3:
                    os._exit(9)
                return real(self, target)
            Path.rename = dying
            gc.collect(Store(Path(sys.argv[1])), gc.Policy(older_than=0), now=time.time())
            """
        )
        done = subprocess.run([sys.executable, "-c", code, str(store)], check=False)
        assert done.returncode == 9
        # Whatever is still in place is whole: a wheelhouse has its manifest, an environment
        # its marker, every named/ link its blob.
        for house in (store / "wheelhouses").iterdir():
            assert (house / "wheelhouse.json").is_file()
        for env in (store / "envs").iterdir():
            assert (env / ".wheelbarrow-env.json").is_file()
        for named in (store / "named").rglob("*"):
            if named.is_dir() and len(named.name) == 64:
                assert Store(store).has(named.name)
        verified(store)
        left = [p for p in (store / "tmp").iterdir() if p.name.startswith("gc-")]
        assert left, "the killed gc left its scratch"
        # The next command that uses the store (here an up-to-date build) removes it.
        assert build_ok(app, store, index_url)["status"] == "up-to-date"
        assert not any(p.exists() for p in left)
        install(app, store, tmp_path / "env3")
        assert imports(tmp_path / "env3", "alpha") == "2.0"
        gc(store, "--older-than", "0")
        assert not (store / "wheelhouses" / old["key"]).exists()
        assert [p for p in (store / "tmp").iterdir() if not p.name.endswith(".lock")] == []


_BUILDER = """
import subprocess, sys
from pathlib import Path
app, store, index, rounds, package, alt = sys.argv[1:7]
for i in range(int(rounds)):
    version = ("1.0", "2.0")[i % 2]
    Path(app, "requirements.txt").write_text(f"{package}=={version}\\n{alt}\\n")
    for args in (
        ["build", app, "--store", store, "--index-url", index, "--platform",
         "manylinux_2_28_x86_64", "-q"],
        ["install", app, "--store", store, "--into", f"{app}-env{i}", "-q"],
    ):
        done = subprocess.run([sys.executable, "-m", "wheelbarrow", *args],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"round {i}: {args[0]} failed: {done.stderr}", flush=True)
            sys.exit(1)
    done = subprocess.run(
        [f"{app}-env{i}/bin/python", "-c", f"import {package}; print({package}.__version__)"],
        capture_output=True, text=True)
    if done.returncode != 0 or done.stdout.strip() != version:
        print(f"round {i}: import {package} gave {done.stdout!r} {done.stderr}", flush=True)
        sys.exit(1)
"""

_COLLECTOR = """
import json, subprocess, sys, time
from pathlib import Path
store, stop = sys.argv[1:3]
runs, removed = 0, 0
while not Path(stop).exists() or runs < 2:
    for args in (["store", "gc", "--store", store, "--older-than", "0", "--json"],
                 ["store", "du", "--store", store, "--json"]):
        done = subprocess.run([sys.executable, "-m", "wheelbarrow", *args],
                              capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{args[1]} failed: {done.stderr}", flush=True)
            sys.exit(1)
        if args[1] == "gc":
            report = json.loads(done.stdout)
            removed += len([r for r in report["removed"] if r["kind"] != "scratch"])
    runs += 1
print(json.dumps({"runs": runs, "removed": removed}), flush=True)
"""


class TestGcConcurrent:
    def test_gc_beside_builds_and_installs_breaks_nothing(self, tmp_path, local_index):
        """gc and du run over and over while two apps are rebuilt and installed; all succeed."""
        d = tmp_path / "dists"
        for name in ("alpha", "gamma"):
            make_wheel(d, name, "1.0")
            make_wheel(d, name, "2.0")
        make_wheel(d, "beta", "1.0", requires=["alpha"])
        make_wheel(d, "delta", "1.0")
        index = local_index(d)
        store = tmp_path / "store"
        stop = tmp_path / "stop"
        apps = [
            make_app(tmp_path / "one", "alpha==1.0\n"),
            make_app(tmp_path / "two", "gamma==1.0\n"),
        ]
        collector = subprocess.Popen(
            [sys.executable, "-c", _COLLECTOR, str(store), str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started = time.monotonic()
        builders = [
            subprocess.Popen(
                [sys.executable, "-c", _BUILDER, str(app), str(store), index.url, "6", pkg, alt],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for app, pkg, alt in ((apps[0], "alpha", "beta==1.0"), (apps[1], "gamma", "delta==1.0"))
        ]
        outputs = [b.communicate(timeout=120)[0] for b in builders]
        stop.touch()
        gc_output = collector.communicate(timeout=120)[0]
        elapsed = time.monotonic() - started
        assert [b.returncode for b in builders] == [0, 0], "\n".join(outputs)
        assert collector.returncode == 0, gc_output
        stats = json.loads(gc_output.splitlines()[-1])
        assert stats["runs"] >= 2
        assert stats["removed"] >= 1, "gc never removed anything beside the builds"
        assert elapsed < 60
        # Afterwards, the store is whole: each app builds as a no-op and installs.
        verified(store)
        for app, pkg in ((apps[0], "alpha"), (apps[1], "gamma")):
            assert build_ok(app, store, index.url)["status"] == "up-to-date"
            install(app, store, tmp_path / f"{app.name}-final")
            assert imports(tmp_path / f"{app.name}-final", pkg) == "2.0"

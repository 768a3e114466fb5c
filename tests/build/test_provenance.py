"""The provenance of source-built wheels: in-toto statements with a SLSA provenance predicate,
kept with each build record, carried by reuse, remote stores, cluster builds and exports."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from support import (
    make_build_helper_sdist,
    make_c_extension_sdist,
    make_dependent_sdist,
    make_wheel,
    sha256_of,
)
from support.apps import PLATFORM, build_ok, cli, make_app, run_ok
from support.artefacts import served_artefact

from wheelbarrow import __version__
from wheelbarrow._core.digests import tree_digest
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow._core.runner import Completed, run_subprocess
from wheelbarrow.app.config import BuildConfig, read_build_config
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import Target
from wheelbarrow.build.buildcache import build_key, record_fetched
from wheelbarrow.build.context import Built, SourceContext
from wheelbarrow.build.provenance import (
    BUILD_TYPE,
    BUILDER_ID,
    PREDICATE_TYPE,
    PROVENANCE,
    STATEMENT_TYPE,
    dumps,
)
from wheelbarrow.build.reproducible import archive_epoch
from wheelbarrow.build.sources import build_sources
from wheelbarrow.cli.common import running_interpreter
from wheelbarrow.store.fetch import Fetcher
from wheelbarrow.store.store import Store
from wheelbarrow.system.fingerprint import toolchain_fingerprint


def context(store: Path, index_url: str, **changes: Any) -> SourceContext:
    """What build_sources is given: the running Python, this machine's real toolchain."""
    from uv import find_uv_bin

    interpreter = running_interpreter()
    ctx = SourceContext(
        store=Store(store),
        target=Target.parse(python=interpreter.version, platform=PLATFORM),
        config=BuildConfig(repair="never"),
        interpreter=interpreter,
        runner=run_subprocess,
        reporter=RecordingReporter(),
        environ=os.environ,
        uv=str(find_uv_bin()),
        index=IndexOptions(index_url=index_url),
        fetcher=Fetcher(backoff=0),
        toolchain=toolchain_fingerprint(which=shutil.which, runner=run_subprocess),
        which=shutil.which,
    )
    from dataclasses import replace

    return replace(ctx, **changes)


def refuse_to_run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Completed:
    """A Runner that must run nothing: a reused build compiles nothing."""
    raise AssertionError(f"nothing should run, but {list(args)} was")


def statement_of(built: Built) -> dict[str, Any]:
    """The provenance statement kept in ``built``'s build cache entry."""
    data: dict[str, Any] = json.loads((built.log.parent / PROVENANCE).read_text())
    return data


def dependencies(statement: Mapping[str, Any]) -> list[dict[str, Any]]:
    resolved: list[dict[str, Any]] = statement["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    return resolved


def check_shape(statement: Mapping[str, Any]) -> None:
    """The statement parses, field for field, into the in-toto project's own messages (an
    unknown field or a wrong type fails), and passes their validation and SLSA's required
    fields."""
    message = json_format.ParseDict(statement, statement_pb2.Statement())
    Statement.copy_from_pb(message).validate()
    predicate = json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
    assert predicate.build_definition.build_type
    assert predicate.build_definition.HasField("external_parameters")
    assert predicate.run_details.builder.id
    for dependency in predicate.build_definition.resolved_dependencies:
        assert dependency.digest, dependency
    assert predicate.run_details.metadata.started_on.seconds > 0


def records_of(store: Path) -> dict[str, Path]:
    """The build cache entries of ``store`` by the name of the wheel each recorded."""
    found = {}
    for result in (store / "built").glob("*/result.json"):
        found[json.loads(result.read_text())["wheel"]] = result.parent
    return found


class TestSdistProvenance:
    def test_names_the_sdist_the_build_requirements_the_backend_and_the_toolchain(
        self, tmp_path, local_index
    ):
        """A C extension built from its sdist with a build requirement from the index: its
        statement's subject is the stored wheel's sha256, and it names the sdist's sha256,
        the requirement's wheel and sha256, the backend and this machine's compilers."""
        d = tmp_path / "d"
        sdist = make_c_extension_sdist(d, build_requires=("alpha",))
        alpha = make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        ctx = context(tmp_path / "store", index.url)

        [built] = build_sources([served_artefact(sdist, index.base_url)], ctx)

        statement = statement_of(built)
        assert statement["_type"] == STATEMENT_TYPE
        assert statement["predicateType"] == PREDICATE_TYPE
        assert statement["subject"] == [{"name": built.wheel, "digest": {"sha256": built.sha256}}]
        assert sha256_of(ctx.store.blob(built.sha256)) == built.sha256
        [source, requirement] = dependencies(statement)
        assert source["name"] == sdist.name
        assert source["digest"] == {"sha256": sha256_of(sdist)}
        assert source["uri"] == f"{index.base_url.rstrip('/')}/{sdist.name}"
        assert requirement["name"] == alpha.name
        assert requirement["digest"] == {"sha256": sha256_of(alpha)}
        assert requirement["annotations"] == {"role": "build-requirement"}
        internal = statement["predicate"]["buildDefinition"]["internalParameters"]
        assert internal["backend"]["requires"] == ["alpha"]
        assert internal["backend"]["name"] == "backend"  # the fixture's in-tree backend
        assert internal["backend"]["path"] == ["_backend"]
        assert internal["toolchain"] == dict(sorted(ctx.toolchain.items()))
        assert internal["toolchain"]["cc"].startswith(("cc (", "gcc")), internal["toolchain"]
        assert internal["target"] == {
            "python": ctx.target.as_dict()["python"],
            "platform": PLATFORM,
        }
        assert internal["repair"] == {"mode": "never", "result": built.repair}
        assert internal["sourceDateEpoch"] == archive_epoch(sdist)
        assert (
            internal["buildKey"]
            == json.loads((built.log.parent / "result.json").read_text())["key"]
        )
        run = statement["predicate"]["runDetails"]
        assert run["builder"] == {"id": BUILDER_ID, "version": {"wheelbarrow": __version__}}
        assert run["metadata"]["invocationId"].startswith("urn:uuid:")
        assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
        [log] = run["byproducts"]
        assert log["digest"] == {"sha256": sha256_of(built.log)}
        check_shape(statement)

    def test_the_build_settings_are_its_external_parameters(self, tmp_path, local_index):
        """env, config settings, patches (by sha256), no-binary and the repair mode the user
        gave are the predicate's external parameters; the build type is wheelbarrow's."""
        d = tmp_path / "d"
        sdist = make_c_extension_sdist(d)
        index = local_index(d)
        settings = tmp_path / "settings"
        settings.mkdir()
        patch = settings / "extra.patch"
        patch.write_text(
            "--- a/cext/__init__.py\n+++ b/cext/__init__.py\n@@ -0,0 +1 @@\n+PATCHED = True\n"
        )
        (settings / "wheelbarrow.toml").write_text(
            'no-binary = ["cext"]\nrepair = "never"\n[packages.cext]\n'
            'env = { FIXTURE_GREETING = "bonjour" }\n'
            'config-settings = { define = "FIXTURE_VALUE=42" }\npatches = ["extra.patch"]\n'
        )
        config = read_build_config(settings)
        ctx = context(tmp_path / "store", index.url, config=config)

        [built] = build_sources([served_artefact(sdist, index.base_url)], ctx)

        definition = statement_of(built)["predicate"]["buildDefinition"]
        assert definition["buildType"] == BUILD_TYPE
        assert definition["externalParameters"] == {
            "package": {
                "name": "cext",
                "version": "1.0",
                "kind": "sdist",
                "uri": f"{index.base_url.rstrip('/')}/{sdist.name}",
            },
            "settings": {
                "env": {"FIXTURE_GREETING": "bonjour"},
                "configSettings": {"define": "FIXTURE_VALUE=42"},
                "patches": [{"path": "extra.patch", "digest": {"sha256": sha256_of(patch)}}],
                "system": [],
            },
            "noBinary": True,
            "repair": "never",
        }
        check_shape(statement_of(built))

    def test_credentials_in_the_build_settings_env_are_masked(self, tmp_path, local_index):
        """A build setting's variable may hold an index URL with its password: the statement
        shipped with the wheel says the variable and the URL, never the password."""
        d = tmp_path / "d"
        sdist = make_c_extension_sdist(d)
        index = local_index(d)
        settings = tmp_path / "settings"
        settings.mkdir()
        (settings / "wheelbarrow.toml").write_text(
            'no-binary = ["cext"]\nrepair = "never"\n[packages.cext]\n'
            'env = { EXTRA_INDEX = "https://alice:hunter22@private.example/simple/" }\n'
        )
        ctx = context(tmp_path / "store", index.url, config=read_build_config(settings))

        [built] = build_sources([served_artefact(sdist, index.base_url)], ctx)

        statement = statement_of(built)
        env = statement["predicate"]["buildDefinition"]["externalParameters"]["settings"]["env"]
        assert env == {"EXTRA_INDEX": "https://alice:****@private.example/simple/"}
        assert "hunter22" not in (built.log.parent / PROVENANCE).read_text()
        check_shape(statement)

    def test_a_build_requirement_built_first_is_named_by_the_wheel_built(
        self, tmp_path, local_index
    ):
        """dependent's build needs buildhelper, itself built from its sdist: dependent's
        statement names the buildhelper wheel built here, with its sha256, and buildhelper's
        own build has a statement of its own."""
        d = tmp_path / "d"
        make_build_helper_sdist(d)
        dependent = make_dependent_sdist(d)
        index = local_index(d)
        ctx = context(tmp_path / "store", index.url)

        [built] = build_sources([served_artefact(dependent, index.base_url)], ctx)

        entries = records_of(tmp_path / "store")
        helper = next(n for n in entries if n.startswith("buildhelper-"))
        helper_sha = json.loads((entries[helper] / "result.json").read_text())["sha256"]
        [_, requirement] = dependencies(statement_of(built))
        assert requirement == {
            "name": helper,
            "digest": {"sha256": helper_sha},
            "annotations": {"role": "built-requirement"},
        }
        helper_statement = json.loads((entries[helper] / PROVENANCE).read_text())
        assert helper_statement["subject"][0]["digest"] == {"sha256": helper_sha}


class TestReusedBuilds:
    def test_a_reused_build_keeps_the_original_provenance_byte_for_byte(
        self, tmp_path, local_index
    ):
        """Built once, then reused from the build cache (nothing runs): the reused build's
        statement is the first build's file, unchanged, beside the same record."""
        sdist = make_c_extension_sdist(tmp_path / "d")
        index = local_index([sdist])
        source = served_artefact(sdist, index.base_url)
        [first] = build_sources([source], context(tmp_path / "store", index.url))
        original = (first.log.parent / PROVENANCE).read_bytes()

        again = context(tmp_path / "store", index.url, runner=refuse_to_run)
        [reused] = build_sources([source], again)

        assert reused.reused is True
        assert reused.log.parent == first.log.parent
        assert (reused.log.parent / PROVENANCE).read_bytes() == original
        assert sorted(p.name for p in first.log.parent.iterdir()) == [
            "build.log",
            PROVENANCE,
            "result.json",
        ]


class TestLocalDirectories:
    def test_a_local_directory_is_named_by_its_tree_digest(self, tmp_path):
        """`./localpkg-1.0` in requirements.txt: its statement names the directory and the
        same tree digest the lock has for it, and validates."""
        app = make_app(tmp_path / "app", "./localpkg-1.0\n")
        sdist = make_c_extension_sdist(tmp_path / "d", "localpkg", "1.0")
        with tarfile.open(sdist) as tar:
            tar.extractall(app, filter="data")
        store = tmp_path / "store"

        result = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")

        assert result.code == 0, result.err
        [built] = result.json()["built"]
        statement = json.loads((Path(built["log"]).parent / PROVENANCE).read_text())
        [source] = dependencies(statement)
        assert source["name"] == "localpkg-1.0"
        assert source["digest"] == {"wheelbarrowTreeSha256": tree_digest(app / "localpkg-1.0")}
        assert source["uri"] == (app / "localpkg-1.0").as_uri()
        assert source["annotations"] == {"role": "source", "kind": "directory"}
        check_shape(statement)


class TestExportedProvenance:
    def test_an_export_holds_each_built_wheels_provenance_and_a_second_replaces_it(
        self, tmp_path, local_index
    ):
        """`build --output DIR` puts the source-built wheel's statement in DIR/provenance/
        (listed in the marker, none for a downloaded wheel); an export after a rebuild with
        other settings replaces it with the new wheel's."""
        d = tmp_path / "d"
        make_c_extension_sdist(d)
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\nalpha==1.0\n")
        store, out = tmp_path / "store", tmp_path / "out"

        first = build_ok(app, store, index.url, "--output", out)

        [built] = first["built"]
        exported = out / "provenance" / f"{built['wheel']}.intoto.json"
        assert sorted(p.name for p in (out / "provenance").iterdir()) == [exported.name]
        assert exported.read_bytes() == (Path(built["log"]).parent / PROVENANCE).read_bytes()
        marker = json.loads((out / ".wheelbarrow-export.json").read_text())
        assert "provenance" in marker["files"]
        old_sha = json.loads(exported.read_text())["subject"][0]["digest"]["sha256"]

        (app / "wheelbarrow.toml").write_text(
            '[packages.cext]\nenv = { FIXTURE_GREETING = "hola" }\n'
        )
        second = build_ok(app, store, index.url, "--output", out)

        [rebuilt] = second["built"]
        assert rebuilt["reused"] is False and rebuilt["wheel"] == built["wheel"]
        manifest = json.loads((out / "wheelhouse.json").read_text())
        new_sha = next(w["sha256"] for w in manifest["wheels"] if w["name"] == "cext")
        assert new_sha != old_sha
        statement = json.loads(exported.read_text())
        assert statement["subject"][0]["digest"] == {"sha256": new_sha}
        assert statement["predicate"]["buildDefinition"]["externalParameters"]["settings"][
            "env"
        ] == {"FIXTURE_GREETING": "hola"}

    def test_an_export_without_source_builds_has_no_provenance_directory(
        self, tmp_path, local_index
    ):
        """A wheelhouse of downloaded wheels only exports no provenance/ directory."""
        index = local_index([make_wheel(tmp_path / "d", "alpha", "1.0")])
        app = make_app(tmp_path / "app", "alpha==1.0\n")

        build_ok(app, tmp_path / "store", index.url, "--output", tmp_path / "out")

        assert not (tmp_path / "out" / "provenance").exists()


class TestRemoteStores:
    def test_a_build_fetched_from_the_remote_store_carries_the_original_provenance(
        self, tmp_path, local_index, s3, remote
    ):
        """Built and pushed by one store, reused by another from the remote store (another
        app, so its wheelhouse is not there to pull whole): the second store's record has the
        first's statement byte for byte, and its result.json stays without it."""
        from support.s3server import client_env

        d = tmp_path / "d"
        make_c_extension_sdist(d)
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\n")
        other = make_app(tmp_path / "other", "cext==1.0\nalpha==1.0\n")
        env = client_env(s3)
        common = ("-i", index.url, "--platform", PLATFORM, "--remote", remote)
        first = run_ok(env, "build", app, "--store", tmp_path / "one", *common, "--push")
        [built] = first["built"]
        original = (Path(built["log"]).parent / PROVENANCE).read_bytes()

        second = run_ok(env, "build", other, "--store", tmp_path / "two", *common)

        [fetched] = second["built"]
        assert fetched["reason"] == "reused from the remote store"
        entry = Path(fetched["log"]).parent
        assert entry.is_relative_to(tmp_path / "two")
        assert (entry / PROVENANCE).read_bytes() == original
        assert "provenance" not in json.loads((entry / "result.json").read_text())


class TestRecordFetched:
    def _record(self, statement: object) -> dict[str, Any]:
        inputs = {"format": 3, "name": "cext"}
        return {
            "key": build_key(inputs),
            "wheel": "cext-1.0-cp311-cp311-linux_x86_64.whl",
            "sha256": "a" * 64,
            "repair": "kept as built (linux_x86_64)",
            "inputs": inputs,
            "links": {},
            "provenance": statement,
        }

    def _statement(self, sha256: str) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [
                {"name": "cext-1.0-cp311-cp311-linux_x86_64.whl", "digest": {"sha256": sha256}}
            ],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"buildDefinition": {"buildType": BUILD_TYPE}},
        }

    def test_the_statement_a_fetched_record_carries_is_written_beside_it(self, tmp_path):
        """A record from a remote store with its wheel's statement inside: the entry gets the
        statement as its own file, in the canonical bytes, and result.json goes without it."""
        statement = self._statement("a" * 64)
        record = self._record(statement)

        entry = record_fetched(Store(tmp_path / "store"), record["key"], record, "s3://b/p", "cext")

        assert (entry / PROVENANCE).read_bytes() == dumps(statement)
        assert "provenance" not in json.loads((entry / "result.json").read_text())

    def test_a_statement_of_another_wheel_is_not_kept(self, tmp_path):
        """A carried statement whose subject is not the record's wheel (another sha256) is
        dropped: the entry has no provenance rather than a wrong one."""
        record = self._record(self._statement("b" * 64))

        entry = record_fetched(Store(tmp_path / "store"), record["key"], record, "s3://b/p", "cext")

        assert not (entry / PROVENANCE).exists()
        assert (entry / "result.json").is_file()


@pytest.mark.slow
class TestClusterBuilds:
    def test_a_wheel_built_on_a_worker_has_the_workers_provenance_on_the_head(
        self, tmp_path, s3, remote
    ):
        """A C extension built on a Dask worker: the head's record carries the statement the
        worker wrote (its toolchain, its build log), byte for byte."""
        from support import serve_local_index
        from support.dask_cluster import run_dask_cluster
        from support.s3server import client_env

        d = tmp_path / "dists"
        make_c_extension_sdist(d, "cext")
        app = make_app(tmp_path / "app", "cext\n")
        env = client_env(s3)
        with (
            run_dask_cluster(tmp_path / "cluster", workers=1, env=s3.env()) as cluster,
            serve_local_index(d) as index,
        ):
            report = run_ok(env, "build", app, "--store", tmp_path / "head", "-i", index.url,
                            "--platform", PLATFORM, "--remote", remote,
                            "--cluster", cluster.address)  # fmt: skip
            [worker] = cluster.workers
            on_worker = records_of(worker.store)
        [built] = report["built"]
        head = Path(built["log"]).parent
        assert (head / PROVENANCE).read_bytes() == (
            on_worker[built["wheel"]] / PROVENANCE
        ).read_bytes()
        statement = json.loads((head / PROVENANCE).read_text())
        sha = json.loads((head / "result.json").read_text())["sha256"]
        assert statement["subject"][0]["digest"] == {"sha256": sha}
        check_shape(statement)


@pytest.mark.network
class TestRealSdist:
    def test_mmh3_built_with_gcc_has_a_valid_provenance(self, tmp_path):
        """mmh3 5.3.1 from its sdist on the index, compiled by gcc: the statement names the
        sdist's sha256 as the lock has it, setuptools' wheel among the build requirements,
        the setuptools backend and gcc, and validates."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("mmh3==5.3.1\n")
        store = tmp_path / "store"

        result = cli("build", app, "--store", store, "--json", "--no-binary", "mmh3")

        assert result.code == 0, result.err
        [built] = result.json()["built"]
        assert built["reused"] is False
        statement = json.loads((Path(built["log"]).parent / PROVENANCE).read_text())
        [source, *requirements] = dependencies(statement)
        assert source["name"] == "mmh3-5.3.1.tar.gz"
        manifest = json.loads((Path(result.json()["wheelhouse"]) / "wheelhouse.json").read_text())
        [entry] = [w for w in manifest["wheels"] if w["name"] == "mmh3"]
        assert source["digest"] == {"sha256": entry["source"]["sha256"]}
        assert statement["subject"][0]["digest"] == {"sha256": entry["sha256"]}
        names = [r["name"] for r in requirements if r["annotations"]["role"] != "linked-library"]
        assert any(n.startswith("setuptools-") for n in names), names
        internal = statement["predicate"]["buildDefinition"]["internalParameters"]
        assert internal["backend"]["name"] == "setuptools.build_meta"
        here = toolchain_fingerprint(which=shutil.which, runner=run_subprocess)
        assert internal["toolchain"]["cc"] == here["cc"] != "absent"
        assert "gcc" in Path(built["log"]).read_text()  # it compiled here
        assert internal["repair"]["result"].startswith("repaired to manylinux")
        check_shape(statement)

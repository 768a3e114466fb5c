"""Tests of wheelbarrow.app.requirements: pip's requirements-file syntax turned into values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from wheelbarrow._core.errors import InputError, RequirementsError
from wheelbarrow.app.requirements import (
    IndexOptions,
    Origin,
    RequirementLine,
    Requirements,
)
from wheelbarrow.app.requirements_file import (
    parse_requirements_file,
    parse_requirements_text,
    requirements_from_strings,
)

SHA256 = "58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f"
SHA256_B = "942c5a758f98d790eaed1a29cb6eefc7ffb0d1cf7af05c3d2791656dbd6ad1e1"
SHA384 = "ab" * 48
SHA512 = "cd" * 64
NO_ENVIRON: Mapping[str, str] = {}


def write(directory: Path, name: str, text: str) -> Path:
    """Write ``text`` to ``directory/name``, creating parent folders."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def parse(directory: Path, text: str, environ: Mapping[str, str] = NO_ENVIRON) -> Requirements:
    """Write ``text`` to requirements.txt in ``directory`` and parse it."""
    return parse_requirements_file(write(directory, "requirements.txt", text), environ=environ)


def problems_of(
    directory: Path, text: str, environ: Mapping[str, str] = NO_ENVIRON
) -> tuple[str, ...]:
    """Parse ``text`` as requirements.txt and return the problems it is refused with."""
    with pytest.raises(RequirementsError) as info:
        parse(directory, text, environ)
    return info.value.problems


def strings(lines: tuple[RequirementLine, ...]) -> list[str]:
    """The requirement lines as text."""
    return [str(line) for line in lines]


class TestRequirementSpecifiers:
    """Plain PEP 508 lines: pins, ranges, extras, markers and ``name @ URL``."""

    def test_pins_ranges_extras_and_markers(self, tmp_path: Path) -> None:
        """Each line becomes a packaging Requirement with its specifier, extras and marker."""
        result = parse(
            tmp_path,
            "numpy==1.26.4\nscipy>=1.11,<2\nrequests[socks, security]~=2.31\n"
            'tomli; python_version < "3.11"\n',
        )
        assert strings(result.requirements) == [
            "numpy==1.26.4",
            "scipy<2,>=1.11",
            "requests[security,socks]~=2.31",
            'tomli; python_version < "3.11"',
        ]
        assert [line.name for line in result.requirements] == [
            "numpy",
            "scipy",
            "requests",
            "tomli",
        ]
        assert all(line.url is None for line in result.requirements)

    def test_name_at_url_keeps_the_url(self, tmp_path: Path) -> None:
        """A ``name @ URL`` requirement records the URL, fragment included."""
        url = f"https://example.com/foo-1.0-py3-none-any.whl#sha256={SHA256}"
        result = parse(tmp_path, f"foo @ {url}\n")
        (line,) = result.requirements
        assert line.url == url
        assert str(line) == f"foo @ {url}"

    def test_name_at_relative_path_becomes_file_url(self, tmp_path: Path) -> None:
        """A relative path after ``@`` is resolved against the requirements file's folder."""
        result = parse(tmp_path, "foo @ ./vendor/foo\n")
        (line,) = result.requirements
        assert line.url == (tmp_path / "vendor" / "foo").as_uri()
        assert str(line) == f"foo @ {(tmp_path / 'vendor' / 'foo').as_uri()}"

    def test_origin_names_file_and_line(self, tmp_path: Path) -> None:
        """Every entry knows the file and line it came from."""
        result = parse(tmp_path, "\nsix\n")
        (line,) = result.requirements
        assert line.origin == Origin(path=tmp_path / "requirements.txt", line=2)
        assert str(line.origin) == f"{tmp_path / 'requirements.txt'}:2"

    def test_invalid_requirement_names_file_line_and_hint(self, tmp_path: Path) -> None:
        """A malformed line is reported as ``file:line: invalid requirement`` with a hint."""
        problems = problems_of(tmp_path, "a\nb\nc\nd\ne\nf\nnumpy=>1.0\n")
        (problem,) = problems
        prefix = f"{tmp_path / 'requirements.txt'}:7: invalid requirement 'numpy=>1.0': "
        assert problem.startswith(prefix)
        assert problem.endswith("; did you mean '>='?")
        assert "\n" not in problem

    def test_single_equals_gets_a_hint(self, tmp_path: Path) -> None:
        """``foo=1.0`` suggests ``==``."""
        (problem,) = problems_of(tmp_path, "foo=1.0\n")
        assert problem.endswith("did you mean '=='?")

    def test_requirements_error_is_an_input_error(self, tmp_path: Path) -> None:
        """The error belongs to the package's hierarchy and carries a hint."""
        with pytest.raises(InputError) as info:
            parse(tmp_path, "numpy=>1\n")
        assert isinstance(info.value, RequirementsError)
        assert info.value.hint is not None


class TestComments:
    """Comments and blank lines, as pip strips them."""

    def test_full_line_and_trailing_comments_are_ignored(self, tmp_path: Path) -> None:
        """``#`` at line start, or after whitespace, starts a comment."""
        result = parse(tmp_path, "# header\n\n   \n  # indented\nsix  # why six\nattrs\t# tab\n")
        assert strings(result.requirements) == ["six", "attrs"]

    def test_hash_inside_a_url_is_not_a_comment(self, tmp_path: Path) -> None:
        """``#sha256=`` and ``#egg=`` follow no whitespace, so they stay part of the URL."""
        result = parse(
            tmp_path,
            f"https://example.com/a-1.0.tar.gz#sha256={SHA256}\n"
            "https://example.com/archive.zip#egg=bee  # the bee project\n",
        )
        first, second = result.requirements
        assert first.url == f"https://example.com/a-1.0.tar.gz#sha256={SHA256}"
        assert first.name == "a"
        assert second.url == "https://example.com/archive.zip"
        assert second.name == "bee"


class TestContinuations:
    """Backslash continuations join physical lines into one logical line."""

    def test_joined_line_keeps_its_first_line_number(self, tmp_path: Path) -> None:
        """A continued requirement is reported at the line where it starts."""
        result = parse(tmp_path, "six\nrequests\\\n[socks]\\\n==2.31.0\nattrs\n")
        assert strings(result.requirements) == ["six", "requests[socks]==2.31.0", "attrs"]
        assert [line.origin.line for line in result.requirements] == [1, 2, 5]

    def test_error_in_continued_line_points_at_first_line(self, tmp_path: Path) -> None:
        """A malformed continued line is reported at its first physical line."""
        (problem,) = problems_of(tmp_path, "six\nnumpy \\\n  =>1.0\n")
        assert problem.startswith(f"{tmp_path / 'requirements.txt'}:2: invalid requirement")

    def test_comment_ends_a_continuation(self, tmp_path: Path) -> None:
        """As in pip, a comment line after a backslash ends the logical line."""
        result = parse(tmp_path, "six \\\n# a comment \\\nattrs\n")
        assert strings(result.requirements) == ["six", "attrs"]

    def test_backslash_on_the_last_line(self, tmp_path: Path) -> None:
        """A dangling backslash at the end of the file is tolerated."""
        result = parse(tmp_path, "six\\")
        assert strings(result.requirements) == ["six"]


class TestIncludes:
    """``-r`` includes: relative to the including file, cycles and missing files reported."""

    def test_r_is_relative_to_the_including_file(self, tmp_path: Path) -> None:
        """Nested includes resolve against their own folder and keep order."""
        write(tmp_path, "reqs/base.txt", "six\n-r nested/more.txt\n")
        write(tmp_path, "reqs/nested/more.txt", "attrs\n--requirement=../last.txt\n")
        write(tmp_path, "reqs/last.txt", "idna\n")
        result = parse(tmp_path, "first\n-r reqs/base.txt\nfinal\n")
        assert strings(result.requirements) == ["first", "six", "attrs", "idna", "final"]
        assert result.files == (
            tmp_path / "requirements.txt",
            tmp_path / "reqs" / "base.txt",
            tmp_path / "reqs" / "nested" / "more.txt",
            tmp_path / "reqs" / "last.txt",
        )
        assert result.requirements[3].origin == Origin(path=tmp_path / "reqs" / "last.txt", line=1)

    def test_long_option_with_space_and_glued_short_option(self, tmp_path: Path) -> None:
        """``--requirement FILE`` and ``-rFILE`` are accepted as by pip."""
        write(tmp_path, "a.txt", "six\n")
        write(tmp_path, "b.txt", "attrs\n")
        result = parse(tmp_path, "--requirement a.txt\n-rb.txt\n")
        assert strings(result.requirements) == ["six", "attrs"]

    def test_include_cycle_is_reported(self, tmp_path: Path) -> None:
        """A file that includes itself through another is an error naming the chain."""
        a = tmp_path / "requirements.txt"
        b = write(tmp_path, "b.txt", "six\n-r requirements.txt\n")
        problems = problems_of(tmp_path, "-r b.txt\n")
        assert problems == (f"{b}:2: include cycle: {a} -> {b} -> {a}",)

    def test_self_include_is_a_cycle(self, tmp_path: Path) -> None:
        """A file including itself is a one-step cycle."""
        a = tmp_path / "requirements.txt"
        assert problems_of(tmp_path, "six\n-r ./requirements.txt\n") == (
            f"{a}:2: include cycle: {a} -> {a}",
        )

    def test_same_file_twice_is_not_a_cycle(self, tmp_path: Path) -> None:
        """Two includes of one file (a diamond) are fine; the file is listed once."""
        write(tmp_path, "common.txt", "six\n")
        write(tmp_path, "x.txt", "-r common.txt\n")
        result = parse(tmp_path, "-r x.txt\n-r common.txt\n")
        assert strings(result.requirements) == ["six", "six"]
        assert result.files.count(tmp_path / "common.txt") == 1

    def test_missing_included_file_names_including_line(self, tmp_path: Path) -> None:
        """A missing ``-r`` file is reported at the including file:line."""
        problems = problems_of(tmp_path, "six\n-r missing.txt\n")
        assert problems == (
            f"{tmp_path / 'requirements.txt'}:2: cannot include "
            f"'{tmp_path / 'missing.txt'}': file not found",
        )

    def test_missing_top_level_file(self, tmp_path: Path) -> None:
        """A missing top-level file is reported with its own name."""
        missing = tmp_path / "nope.txt"
        with pytest.raises(RequirementsError) as info:
            parse_requirements_file(missing)
        assert info.value.problems == (f"{missing}: file not found",)

    def test_non_utf8_file_is_an_error(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 are reported with the file's name."""
        path = tmp_path / "latin1.txt"
        path.write_bytes(b"caf\xe9\n")
        with pytest.raises(RequirementsError) as info:
            parse_requirements_file(path)
        (problem,) = info.value.problems
        assert problem.startswith(f"{path}: not UTF-8 text")

    def test_byte_order_mark_is_accepted(self, tmp_path: Path) -> None:
        """A UTF-8 byte order mark, as Windows editors write, is not part of the first line."""
        path = tmp_path / "bom.txt"
        path.write_bytes(b"\xef\xbb\xbfsix\n")
        assert strings(parse_requirements_file(path).requirements) == ["six"]

    def test_url_include_is_refused(self, tmp_path: Path) -> None:
        """Requirement files from URLs are not fetched."""
        (problem,) = problems_of(tmp_path, "-r https://example.com/requirements.txt\n")
        assert "only local files can be included" in problem

    def test_text_with_injected_reader(self) -> None:
        """parse_requirements_text reads includes through the given function, not the disk."""
        files = {Path("/virtual/more.txt"): "attrs\n"}
        result = parse_requirements_text(
            "six\n-r more.txt\n",
            path=Path("/virtual/requirements.txt"),
            read_file=files.__getitem__,
        )
        assert strings(result.requirements) == ["six", "attrs"]
        assert result.files == (Path("/virtual/requirements.txt"), Path("/virtual/more.txt"))

    def test_injected_reader_missing_file(self) -> None:
        """A reader raising FileNotFoundError gives the same error as a missing file."""

        def read(path: Path) -> str:
            raise FileNotFoundError(path)

        with pytest.raises(RequirementsError) as info:
            parse_requirements_text("-r gone.txt\n", path=Path("/v/r.txt"), read_file=read)
        assert info.value.problems == ("/v/r.txt:1: cannot include '/v/gone.txt': file not found",)


class TestConstraints:
    """``-c`` files add constraints, not requirements."""

    def test_constraint_files(self, tmp_path: Path) -> None:
        """Lines of ``-c`` and ``--constraint`` files become constraints."""
        write(tmp_path, "c1.txt", "urllib3<2\n")
        write(tmp_path, "c2.txt", "idna==3.6\n")
        result = parse(tmp_path, "requests\n-c c1.txt\n--constraint=c2.txt\n")
        assert strings(result.requirements) == ["requests"]
        assert strings(result.constraints) == ["urllib3<2", "idna==3.6"]
        assert result.constraints[0].origin == Origin(path=tmp_path / "c1.txt", line=1)

    def test_includes_inside_a_constraints_file_constrain(self, tmp_path: Path) -> None:
        """Everything reached from a constraints file is a constraint."""
        write(tmp_path, "c.txt", "-r more-c.txt\n")
        write(tmp_path, "more-c.txt", "idna==3.6\n")
        result = parse(tmp_path, "-c c.txt\n")
        assert result.requirements == ()
        assert strings(result.constraints) == ["idna==3.6"]

    def test_options_in_constraints_files_apply(self, tmp_path: Path) -> None:
        """Index options in a constraints file are honoured, as pip does."""
        write(tmp_path, "c.txt", "--extra-index-url https://extra.example/simple\n")
        result = parse(tmp_path, "-c c.txt\n")
        assert result.index.extra_index_urls == ("https://extra.example/simple",)

    def test_nameless_constraint_is_refused(self, tmp_path: Path) -> None:
        """A constraint must name a project."""
        write(tmp_path, "c.txt", "./somewhere\n")
        (problem,) = problems_of(tmp_path, "-c c.txt\n")
        assert problem.startswith(f"{tmp_path / 'c.txt'}:1: constraint './somewhere'")
        assert "#egg=NAME" in problem


class TestHashes:
    """Per-requirement ``--hash`` options."""

    def test_several_hashes_in_both_spellings(self, tmp_path: Path) -> None:
        """``--hash=`` and ``--hash VALUE`` are collected in order, as written."""
        result = parse(
            tmp_path,
            f"requests==2.31.0 \\\n    --hash=sha256:{SHA256} \\\n    --hash sha256:{SHA256_B}\n",
        )
        (line,) = result.requirements
        assert line.hashes == (f"sha256:{SHA256}", f"sha256:{SHA256_B}")
        assert str(line) == "requests==2.31.0"

    def test_sha384_and_sha512(self, tmp_path: Path) -> None:
        """The stronger SHA-2 digests are allowed."""
        result = parse(tmp_path, f"six --hash=sha384:{SHA384} --hash=sha512:{SHA512}\n")
        assert result.requirements[0].hashes == (f"sha384:{SHA384}", f"sha512:{SHA512}")

    def test_weak_algorithm_is_refused(self, tmp_path: Path) -> None:
        """md5 and other algorithms are errors listing the allowed ones."""
        (problem,) = problems_of(tmp_path, "six --hash=md5:" + "a" * 32 + "\n")
        assert problem == (
            f"{tmp_path / 'requirements.txt'}:1: invalid hash 'md5:{'a' * 32}': "
            "the algorithm must be one of sha256, sha384, sha512"
        )

    def test_wrong_length_is_refused(self, tmp_path: Path) -> None:
        """A digest of the wrong length is an error giving the expected length."""
        (problem,) = problems_of(tmp_path, f"six --hash=sha256:{SHA256[:-1]}\n")
        assert "a sha256 digest is 64 hexadecimal characters, got 63" in problem

    def test_non_hex_digest_is_refused(self, tmp_path: Path) -> None:
        """A digest with letters beyond ``f`` is an error."""
        (problem,) = problems_of(tmp_path, f"six --hash=sha256:{'z' * 64}\n")
        assert "not all hexadecimal" in problem

    def test_missing_algorithm_is_refused(self, tmp_path: Path) -> None:
        """A bare digest without ``sha256:`` is an error."""
        (problem,) = problems_of(tmp_path, f"six --hash={SHA256}\n")
        assert "expected ALGORITHM:DIGEST" in problem

    def test_hash_on_its_own_line_is_refused(self, tmp_path: Path) -> None:
        """A ``--hash`` without a requirement before it is an error."""
        (problem,) = problems_of(tmp_path, f"six\n--hash=sha256:{SHA256}\n")
        assert problem.startswith(f"{tmp_path / 'requirements.txt'}:2: --hash must follow")

    def test_hash_without_value_is_refused(self, tmp_path: Path) -> None:
        """``--hash`` needs a value."""
        (problem,) = problems_of(tmp_path, "six --hash\n")
        assert problem.endswith("option --hash needs a value")


class TestIndexOptions:
    """Global index options: -i, --extra-index-url, -f, --no-index, --trusted-host."""

    def test_index_options_are_recorded(self, tmp_path: Path) -> None:
        """Each option lands in its field; the last index URL wins, lists accumulate."""
        result = parse(
            tmp_path,
            "-i https://first.example/simple\n"
            "--index-url=https://mirror.example/simple\n"
            "--extra-index-url https://a.example/simple\n"
            "--extra-index-url=https://b.example/simple\n"
            "--no-index\n"
            "--trusted-host a.example --trusted-host b.example\n",
        )
        assert result.index == IndexOptions(
            index_url="https://mirror.example/simple",
            extra_index_urls=("https://a.example/simple", "https://b.example/simple"),
            no_index=True,
            trusted_hosts=("a.example", "b.example"),
        )
        assert result.requirements == ()

    def test_relative_find_links_resolves_against_the_file(self, tmp_path: Path) -> None:
        """A relative ``-f`` path is made absolute from the requirements file's folder."""
        write(tmp_path, "sub/inner.txt", "--find-links ../wheels\n")
        absolute = tmp_path / "elsewhere"
        result = parse(
            tmp_path,
            f"-f ./wheels\n-r sub/inner.txt\n-f {absolute}\n-f https://example.com/links/\n",
        )
        assert result.index.find_links == (
            str(tmp_path / "wheels"),
            str(absolute),
            "https://example.com/links/",
        )

    def test_global_option_on_a_requirement_line_is_refused(self, tmp_path: Path) -> None:
        """Index options must stand on their own line."""
        (problem,) = problems_of(tmp_path, "six --index-url https://x.example/simple\n")
        assert problem == (
            f"{tmp_path / 'requirements.txt'}:1: option --index-url is not allowed on a "
            "requirement line; put it on a line of its own"
        )

    def test_command_line_overrides(self) -> None:
        """The other options' index URL wins; lists are appended without duplicates."""
        from_file = IndexOptions(
            index_url="https://file.example/simple",
            extra_index_urls=("https://a.example/simple",),
            find_links=("/wheels",),
            trusted_hosts=("a.example",),
        )
        cli = IndexOptions(
            index_url="https://cli.example/simple",
            extra_index_urls=("https://b.example/simple", "https://a.example/simple"),
            no_index=True,
        )
        merged = from_file.overridden_by(cli)
        assert merged == IndexOptions(
            index_url="https://cli.example/simple",
            extra_index_urls=("https://a.example/simple", "https://b.example/simple"),
            find_links=("/wheels",),
            no_index=True,
            trusted_hosts=("a.example",),
        )
        assert from_file.overridden_by(IndexOptions()).index_url == "https://file.example/simple"


class TestInstallOptions:
    """--pre, --prefer-binary, --require-hashes, --only-binary and --no-binary."""

    def test_flags_are_recorded(self, tmp_path: Path) -> None:
        """Flag options set their field."""
        result = parse(tmp_path, "--pre\n--prefer-binary\n--require-hashes\n")
        assert (result.pre, result.prefer_binary, result.require_hashes) == (True, True, True)

    def test_flags_default_to_false(self, tmp_path: Path) -> None:
        """Without options every flag is off and every set empty."""
        result = parse(tmp_path, "six\n")
        assert (result.pre, result.prefer_binary, result.require_hashes) == (False, False, False)
        assert result.only_binary == result.no_binary == frozenset()

    def test_binary_names_are_canonical(self, tmp_path: Path) -> None:
        """Project names are normalised; several may be comma-separated."""
        result = parse(tmp_path, "--only-binary Pillow,Foo_Bar\n--no-binary=PyYAML\n")
        assert result.only_binary == frozenset({"pillow", "foo-bar"})
        assert result.no_binary == frozenset({"pyyaml"})

    def test_all_and_later_names(self, tmp_path: Path) -> None:
        """``:all:`` clears the other set; a later name moves between the sets, as pip."""
        result = parse(tmp_path, "--only-binary numpy\n--no-binary :all:\n--only-binary scipy\n")
        assert result.no_binary == frozenset({":all:"})
        assert result.only_binary == frozenset({"scipy"})

    def test_none_clears(self, tmp_path: Path) -> None:
        """``:none:`` empties its set."""
        result = parse(tmp_path, "--no-binary numpy\n--no-binary :none:\n")
        assert result.no_binary == frozenset()

    def test_invalid_name_is_refused(self, tmp_path: Path) -> None:
        """A value that is not a project name is an error."""
        (problem,) = problems_of(tmp_path, "--only-binary numpy,-bad!\n")
        assert "'-bad!' is not a project name" in problem

    def test_flag_with_value_is_refused(self, tmp_path: Path) -> None:
        """``--pre=yes`` is an error."""
        (problem,) = problems_of(tmp_path, "--pre=yes\n")
        assert problem.endswith("option --pre takes no value")


class TestEnvironmentVariables:
    """``${VAR}`` expansion from the mapping the caller passes."""

    def test_variables_are_expanded(self, tmp_path: Path) -> None:
        """``${VAR}`` is replaced anywhere on a line, includes too."""
        write(tmp_path, "extra.txt", "attrs\n")
        result = parse(
            tmp_path,
            "-i https://${USER_1}:${TOKEN}@pypi.example/simple\n-r ${NAME}.txt\nsix==${V}\n",
            environ={"USER_1": "me", "TOKEN": "s3cret", "NAME": "extra", "V": "1.16.0"},
        )
        assert result.index.index_url == "https://me:s3cret@pypi.example/simple"
        assert strings(result.requirements) == ["attrs", "six==1.16.0"]

    def test_only_the_braced_form_is_expanded(self, tmp_path: Path) -> None:
        """``$VAR`` and lowercase names are left alone, as pip does."""
        result = parse(
            tmp_path,
            "--extra-index-url https://$TOKEN@x.example/${lower}/simple\n",
            environ={"TOKEN": "t", "lower": "l"},
        )
        assert result.index.extra_index_urls == ("https://$TOKEN@x.example/${lower}/simple",)

    def test_unset_variable_is_an_error(self, tmp_path: Path) -> None:
        """A ``${VAR}`` missing from the mapping is reported at its line."""
        problems = problems_of(tmp_path, "six\n-i https://${TOKEN}@x.example/simple\n")
        assert problems == (
            f"{tmp_path / 'requirements.txt'}:2: environment variable TOKEN is not set "
            "(used as ${TOKEN}); set it, or write the value in the file",
        )

    def test_process_environment_is_not_read(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without a mapping nothing comes from os.environ."""
        monkeypatch.setenv("WHEELBARROW_TEST_TOKEN", "leak")
        problems = problems_of(tmp_path, "-i https://${WHEELBARROW_TEST_TOKEN}@x/simple\n")
        assert "WHEELBARROW_TEST_TOKEN is not set" in problems[0]


class TestLocalPathsAndUrls:
    """Bare local paths and URLs become entries with a ``file:`` or remote URL."""

    def test_relative_paths_become_absolute_file_urls(self, tmp_path: Path) -> None:
        """``./pkg`` and ``../x`` resolve against the requirements file's folder."""
        sub = tmp_path / "app"
        result = parse_requirements_file(write(sub, "requirements.txt", "./pkg\n../x\n"))
        first, second = result.requirements
        assert first.requirement is None
        assert first.name is None
        assert first.url == (sub / "pkg").as_uri()
        assert str(first) == (sub / "pkg").as_uri()
        assert second.url == (tmp_path / "x").as_uri()

    def test_file_url_is_kept(self, tmp_path: Path) -> None:
        """A ``file:`` URL stays as written."""
        url = (tmp_path / "abs" / "dir").as_uri()
        result = parse(tmp_path, f"{url}\n")
        assert result.requirements[0].url == url
        assert result.requirements[0].requirement is None

    def test_egg_fragment_names_the_project(self, tmp_path: Path) -> None:
        """``#egg=NAME`` gives a path a name and is removed from the URL."""
        result = parse(tmp_path, "./pkg#egg=My_Pkg\n")
        (line,) = result.requirements
        assert line.name == "my-pkg"
        assert line.url == (tmp_path / "pkg").as_uri()
        assert str(line) == f"My_Pkg @ {(tmp_path / 'pkg').as_uri()}"

    def test_wheel_and_sdist_file_names_give_the_name(self, tmp_path: Path) -> None:
        """A wheel or sdist file name tells the project name."""
        result = parse(
            tmp_path,
            "dist/foo_bar-1.0-py3-none-any.whl\n./dist/baz-2.0.tar.gz\n",
        )
        assert [line.name for line in result.requirements] == ["foo-bar", "baz"]
        assert (
            result.requirements[0].url == (tmp_path / "dist/foo_bar-1.0-py3-none-any.whl").as_uri()
        )

    @pytest.mark.parametrize(
        "text",
        [
            './pkg[fast]#egg=pkg ; sys_platform == "linux"',
            './pkg#egg=pkg[fast]; sys_platform == "linux"',
        ],
    )
    def test_extras_and_marker_on_a_named_path(self, tmp_path: Path, text: str) -> None:
        """Extras and a marker after a named path are kept on its requirement."""
        (line,) = parse(tmp_path, text + "\n").requirements
        assert line.url == (tmp_path / "pkg").as_uri()
        assert str(line) == f'pkg[fast] @ {line.url} ; sys_platform == "linux"'

    def test_egg_is_removed_and_other_fragments_kept(self, tmp_path: Path) -> None:
        """Only ``egg=`` leaves the fragment; ``subdirectory=`` stays as written."""
        result = parse(tmp_path, "https://example.com/repo.zip#egg=foo&subdirectory=py/pkg\n")
        (line,) = result.requirements
        assert line.url == "https://example.com/repo.zip#subdirectory=py/pkg"
        assert str(line) == "foo @ https://example.com/repo.zip#subdirectory=py/pkg"

    def test_marker_on_a_nameless_path_is_refused(self, tmp_path: Path) -> None:
        """Without a name, extras and markers cannot be expressed, so they are refused."""
        (problem,) = problems_of(tmp_path, './pkg ; sys_platform == "linux"\n')
        assert "no project name; add '#egg=NAME'" in problem

    def test_remote_url_without_name(self, tmp_path: Path) -> None:
        """A URL whose name is unknown keeps ``requirement=None``."""
        result = parse(tmp_path, "git+https://example.com/repo.git@v1\n")
        assert result.requirements[0].requirement is None
        assert str(result.requirements[0]) == "git+https://example.com/repo.git@v1"


class TestEditable:
    """``-e`` is accepted: the path or URL is built into a wheel, deployed non-editable."""

    @pytest.mark.parametrize("option", ["-e", "--editable", "--editable="])
    def test_an_editable_path_is_a_requirement_marked_editable(
        self, tmp_path: Path, option: str
    ) -> None:
        """Every spelling gives the path as a file: URL, flagged editable."""
        (tmp_path / "pkg").mkdir()
        sep = "" if option.endswith("=") else " "
        result = parse(tmp_path, f"six\n{option}{sep}./pkg\n")
        assert [(str(r), r.editable) for r in result.requirements] == [
            ("six", False),
            ((tmp_path / "pkg").as_uri(), True),
        ]
        assert result.requirements[1].origin.line == 2

    def test_editable_dot_is_the_app_itself(self, tmp_path: Path) -> None:
        """``-e .`` names the directory of the requirements file."""
        result = parse(tmp_path, "-e .\n")
        assert result.requirements[0].url == tmp_path.resolve().as_uri()

    def test_an_editable_vcs_url_keeps_its_egg_name(self, tmp_path: Path) -> None:
        """``-e git+URL#egg=NAME`` is the named direct reference."""
        result = parse(tmp_path, "-e git+https://example.com/r.git@v1#egg=thing\n")
        (line,) = result.requirements
        assert (str(line), line.editable) == ("thing @ git+https://example.com/r.git@v1", True)

    def test_an_editable_name_is_an_error(self, tmp_path: Path) -> None:
        """``-e six`` names no path or URL: the problem says to drop -e."""
        (problem,) = problems_of(tmp_path, "-e six\n")
        assert problem == (
            f"{tmp_path / 'requirements.txt'}:1: editable requirement '-e six' is not a path "
            "or URL; write the requirement without -e"
        )

    def test_an_editable_constraint_is_an_error(self, tmp_path: Path) -> None:
        """A constraints file cannot hold an editable requirement."""
        (tmp_path / "c.txt").write_text("-e ./pkg\n")
        (problem,) = problems_of(tmp_path, "-c c.txt\nsix\n")
        assert "an editable requirement cannot constrain: './pkg'" in problem


class TestProblems:
    """Unknown options and the collection of every problem before raising."""

    def test_unknown_option(self, tmp_path: Path) -> None:
        """An option pip's file format does not have here is an error listing supported ones."""
        (problem,) = problems_of(tmp_path, "--foo\n")
        assert problem.startswith(
            f"{tmp_path / 'requirements.txt'}:1: unknown option '--foo'; supported options: -r"
        )

    def test_unknown_short_option(self, tmp_path: Path) -> None:
        """An unknown short option is an error too."""
        (problem,) = problems_of(tmp_path, "-x y\n")
        assert "unknown option '-x'" in problem

    def test_unclosed_quote(self, tmp_path: Path) -> None:
        """Options that shlex cannot split are an error."""
        (problem,) = problems_of(tmp_path, "--trusted-host 'x\n")
        assert "cannot read the options" in problem

    def test_stray_argument_after_options(self, tmp_path: Path) -> None:
        """A word after an option's value is an error."""
        write(tmp_path, "a.txt", "six\n")
        (problem,) = problems_of(tmp_path, "-r a.txt b.txt\n")
        assert problem.endswith("unexpected argument 'b.txt' after the options")

    def test_all_problems_of_all_files_are_collected(self, tmp_path: Path) -> None:
        """Problems from every file come together, in reading order."""
        other = write(tmp_path, "other.txt", "ok\nbad==\n--nope\n")
        main = tmp_path / "requirements.txt"
        problems = problems_of(tmp_path, "numpy=>1\n-r other.txt\n-e six\nsix --hash=md5:00\n")
        assert [p.split(": ", 1)[0] for p in problems] == [
            f"{main}:1",
            f"{other}:2",
            f"{other}:3",
            f"{main}:3",
            f"{main}:4",
        ]
        with pytest.raises(RequirementsError) as info:
            parse_requirements_file(main)
        assert str(info.value) == "\n".join(problems)


class TestRequirementsFromStrings:
    """PEP 508 strings such as pyproject.toml ``[project] dependencies``."""

    def test_strings_become_requirements(self, tmp_path: Path) -> None:
        """Each string is one requirement, labelled by its index."""
        pyproject = tmp_path / "pyproject.toml"
        result = requirements_from_strings(["numpy>=1.26", "rich[jupyter]"], path=pyproject)
        assert strings(result.requirements) == ["numpy>=1.26", "rich[jupyter]"]
        assert result.requirements[1].origin == Origin(path=pyproject, label="dependencies[1]")
        assert result.files == (pyproject,)

    def test_errors_name_the_index(self, tmp_path: Path) -> None:
        """A bad string is reported as ``pyproject.toml: dependencies[i]``."""
        pyproject = tmp_path / "pyproject.toml"
        with pytest.raises(RequirementsError) as info:
            requirements_from_strings(["six", "ok", "", "numpy=>1"], path=pyproject)
        assert [p.rsplit(": invalid", 1)[0] for p in info.value.problems] == [
            f"{pyproject}: dependencies[2]",
            f"{pyproject}: dependencies[3]",
        ]


class TestValues:
    """The parsed values are immutable."""

    def test_values_are_frozen(self, tmp_path: Path) -> None:
        """Assigning to a field raises."""
        result = parse(tmp_path, "six\n")
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.pre = True  # type: ignore[misc]
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.requirements[0].url = "x"  # type: ignore[misc]

    def test_requirement_line_needs_a_requirement_or_url(self, tmp_path: Path) -> None:
        """A line with neither a requirement nor a URL cannot be built."""
        with pytest.raises(ValueError, match="requirement or a url"):
            RequirementLine(requirement=None, origin=Origin(path=tmp_path, line=1))

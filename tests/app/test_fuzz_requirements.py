"""Fuzz tests of wheelbarrow.app.requirements: any requirements file is parsed or refused, no crash.

Every refusal is a RequirementsError whose problems each name the file and
line they come from. Inputs are both random bytes and structured lines (pins,
URLs, paths, options, includes, variables) with one part broken.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import fuzz_settings, nasty_bytes, nasty_text, requirement_line, requirements_file

from wheelbarrow._core.errors import RequirementsError
from wheelbarrow.app.requirements import Requirements
from wheelbarrow.app.requirements_file import parse_requirements_file, requirements_from_strings
from wheelbarrow.app.target import Target
from wheelbarrow.lock.resolve import LockRequest

TARGET = Target.parse(python="3.12", platform="manylinux_2_28_x86_64", python_source="test")


def check(root: Path, main: bytes, included: bytes, environ: dict[str, str]) -> None:
    """Parse ``main`` (which may include ``included``): a value, or problems with file and line."""
    for name, data in (("requirements.txt", main), ("inc.txt", included)):
        (root / name).write_bytes(data)
    path = root / "requirements.txt"
    try:
        result = parse_requirements_file(path, environ=environ)
    except RequirementsError as exc:
        assert exc.problems, "a RequirementsError lists at least one problem"
        assert exc.hint
        for problem in exc.problems:
            # file:line: message; only an unreadable outermost file has no line.
            match = re.match(rf"({re.escape(str(root))}/[^:]*?)(:\d+)?: \S", problem)
            assert match is not None, problem
            assert match.group(2) or "UTF-8" in problem or "cannot read" in problem, problem
        return
    assert isinstance(result, Requirements)
    # What lock and the wheelhouse key do with a parsed file must work too.
    assert LockRequest(requirements=result, target=TARGET, index=result.index).digest
    for line in (*result.requirements, *result.constraints):
        assert "\n" not in str(line), line


class TestRequirementsFuzz:
    """parse_requirements_file on thousands of generated files."""

    @fuzz_settings(1500)
    @given(main=requirements_file(), included=requirements_file(), var=nasty_text)
    def test_structured_files_parse_or_name_file_and_line(
        self, tmp_path: Path, main: bytes, included: bytes, var: str
    ) -> None:
        """Valid-looking lines with one broken part are parsed or refused with file:line."""
        check(tmp_path, main, included, {"VAR": var, "lower": "x"})

    @fuzz_settings(500)
    @given(main=nasty_bytes, included=nasty_bytes)
    def test_random_bytes_parse_or_name_file(
        self, tmp_path: Path, main: bytes, included: bytes
    ) -> None:
        """Random bytes (NULs, bad UTF-8, control characters) never crash the parser."""
        check(tmp_path, main + b"\n-r inc.txt", included, {})

    @pytest.mark.parametrize(
        ("line", "fragment"),
        [
            ("-r \x00", "NUL"),
            ("./pkg\x00", "NUL"),
            ("https://[::1/x.whl", "URL"),
            ("six @ https://[::1/x.whl", "URL"),
            ("-f https://[::1", "URL"),
            ("-i https://127.0.0.1:99999/simple", "Port out of range"),
            ("https://[zz]/six-1.0.tar.gz", "URL"),
            ("-r ${VAR}", "once expanded, it holds a NUL"),
        ],
    )
    def test_cases_that_crashed(self, tmp_path: Path, line: str, fragment: str) -> None:
        """NUL bytes in paths and malformed URLs are problems on their line, not tracebacks."""
        (tmp_path / "requirements.txt").write_text(f"six\n{line}\n", encoding="utf-8")
        with pytest.raises(RequirementsError) as info:
            parse_requirements_file(tmp_path / "requirements.txt", environ={"VAR": "a\0b"})
        (problem,) = info.value.problems
        assert problem.startswith(f"{tmp_path / 'requirements.txt'}:2: "), problem
        assert fragment in problem, problem


class TestDependenciesFuzz:
    """requirements_from_strings, as for ``[project] dependencies``."""

    @fuzz_settings(500)
    @given(lines=st.lists(st.one_of(requirement_line(), nasty_text), max_size=6))
    def test_dependencies_parse_or_name_file_and_index(
        self, tmp_path: Path, lines: list[str]
    ) -> None:
        """Each bad dependency is a problem that names pyproject.toml and its index."""
        path = tmp_path / "pyproject.toml"
        try:
            requirements_from_strings(lines, path=path)
        except RequirementsError as exc:
            for problem in exc.problems:
                assert re.match(rf"{re.escape(str(path))}: dependencies\[\d+\]: ", problem), problem

    @pytest.mark.parametrize("dependency", ["x @ ./a\0", "x @ file:///a\0b", "x @ https://[::1/"])
    def test_dependencies_that_crashed(self, tmp_path: Path, dependency: str) -> None:
        """A NUL byte or a malformed URL in a dependency is a problem naming its index."""
        path = tmp_path / "pyproject.toml"
        with pytest.raises(RequirementsError) as info:
            requirements_from_strings(["six", dependency], path=path)
        (problem,) = info.value.problems
        assert problem.startswith(f"{path}: dependencies[1]: "), problem

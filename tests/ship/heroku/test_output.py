"""Tests for wheelbarrow.ship.heroku.output: build output in Heroku's style."""

from __future__ import annotations

import io
import threading

from wheelbarrow._core.report import Reporter
from wheelbarrow.ship.heroku.output import HerokuReporter


def make() -> tuple[HerokuReporter, io.StringIO]:
    stream = io.StringIO()
    return HerokuReporter(stream), stream


class TestLines:
    def test_step_and_detail(self) -> None:
        """A step starts with an arrow and its details line up seven spaces in."""
        r, out = make()
        r.step("Installing requirements")
        r.detail("numpy 2.1.3")
        assert out.getvalue() == "-----> Installing requirements\n       numpy 2.1.3\n"

    def test_multiline_step_continues_as_details(self) -> None:
        """The lines after a step's first are indented like details."""
        r, out = make()
        r.step("Dropping the build cache\nthe stack changed")
        assert out.getvalue() == "-----> Dropping the build cache\n       the stack changed\n"

    def test_multiline_detail(self) -> None:
        """Every line of a detail is indented, and blank lines carry no trailing spaces."""
        r, out = make()
        r.detail("one\n\ntwo")
        assert out.getvalue() == "       one\n\n       two\n"

    def test_warning_prefixes_every_line(self) -> None:
        """A warning marks each of its lines and stands between blank lines."""
        r, out = make()
        r.warn("no Procfile\nthe default web process is used")
        assert out.getvalue() == (
            "\n !     no Procfile\n !     the default web process is used\n\n"
        )

    def test_error_ends_with_what_to_do(self) -> None:
        """An error prints its message lines, then a last marked line with the hint."""
        r, out = make()
        r.error("2 package(s) have no compatible wheel:\n  - foo\n  - bar", "pin other versions")
        assert out.getvalue().splitlines() == [
            "",
            " !     2 package(s) have no compatible wheel:",
            " !       - foo",
            " !       - bar",
            " !     Hint: pin other versions",
            "",
        ]

    def test_error_without_hint(self) -> None:
        """An error without a hint ends after its message."""
        r, out = make()
        r.error("the build failed")
        assert out.getvalue() == "\n !     the build failed\n\n"


class TestBuildLines:
    def test_each_build_gets_a_start_and_an_end_line(self) -> None:
        """Builds are details of the wheelhouse step: when each starts, when it ends, how long."""
        from pathlib import Path

        r, out = make()
        r.step("Building the wheelhouse")
        r.build_started("cext 1.0", Path("/cache/store/built/k/build.log"))
        r.build_finished(
            "cext 1.0",
            ok=True,
            seconds=4.04,
            result="repaired to manylinux_2_28_x86_64 (nothing vendored)",
        )
        assert out.getvalue().splitlines() == [
            "-----> Building the wheelhouse",
            "       Building cext 1.0 from source",
            "       Built cext 1.0 in 4.0s: repaired to manylinux_2_28_x86_64 (nothing vendored)",
        ]

    def test_a_failed_build_ends_with_a_warning(self) -> None:
        """A failure stands out as a warning, with its duration and what went wrong."""
        r, out = make()
        r.build_finished(
            "broken 1.0", ok=False, seconds=3725, result="the build failed (log: /c/build.log)"
        )
        assert out.getvalue().splitlines() == [
            "",
            " !     Failed to build broken 1.0 after 1h02m: the build failed (log: /c/build.log)",
            "",
        ]


class TestReporter:
    def test_is_a_reporter(self) -> None:
        """HerokuReporter satisfies the core's Reporter protocol."""
        reporter: Reporter = make()[0]
        assert callable(reporter.message)

    def test_message_levels(self) -> None:
        """Core messages map to steps, details and warnings."""
        r, out = make()
        r.message("step", "Locking")
        r.message("info", "12 packages")
        r.message("warning", "slow index")
        assert out.getvalue() == ("-----> Locking\n       12 packages\n\n !     slow index\n\n")

    def test_downloads_print_one_line_per_file(self) -> None:
        """Downloads show one detail line per finished file and nothing else."""
        r, out = make()
        r.download_started(2, None)
        r.download_expected(2_000_000)
        r.download_advanced(1_500_000)
        r.download_file_done("numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.whl", 16_300_000)
        r.download_advanced(500_000)
        r.download_file_done("six-1.16.0-py2.py3-none-any.whl", 11_053)
        r.download_finished()
        assert out.getvalue() == (
            "       Fetched numpy-2.1.3-cp312-cp312-manylinux_2_17_x86_64.whl (16.3 MB)\n"
            "       Fetched six-1.16.0-py2.py3-none-any.whl (11.1 kB)\n"
        )

    def test_parallel_writers_never_interleave(self) -> None:
        """Messages from many threads at once come out as whole lines."""
        r, out = make()

        def work(n: int) -> None:
            for i in range(200):
                r.download_file_done(f"pkg{n}-{i}.whl", 1000)
                r.warn(f"thread {n}\nline two")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = out.getvalue().splitlines()
        fetched = [line for line in lines if line.startswith("       Fetched ")]
        assert len(fetched) == 8 * 200
        assert all(line.endswith(".whl (1.0 kB)") for line in fetched)
        text = out.getvalue()
        assert text.count(" !     line two\n") == 8 * 200
        for n in range(8):
            assert text.count(f" !     thread {n}\n !     line two\n") == 200

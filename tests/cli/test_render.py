"""The CLI's renderers: plain lines for logs and CI, rich live views on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from wheelbarrow._core.report import Reporter
from wheelbarrow.cli.render import BuildsView, PlainReporter, RichReporter, last_log_line


class Ticks:
    """A clock that says what the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rendered(renderable: object, width: int = 60) -> list[str]:
    """What rich draws for ``renderable`` at ``width`` columns, trailing spaces dropped."""
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return [line.rstrip() for line in out.getvalue().splitlines()]


class TestPlainReporter:
    def test_is_a_reporter(self):
        """PlainReporter satisfies the core's Reporter protocol."""
        reporter: Reporter = PlainReporter(io.StringIO())
        assert reporter is not None

    def test_a_line_as_each_build_starts_and_one_as_it_ends(self):
        """Each build gets a start line and an end line with its duration and result."""
        stream = io.StringIO()
        reporter = PlainReporter(stream)
        reporter.build_started("cext 1.0", Path("/store/built/k/build.log"))
        reporter.build_started("numpy 2.1.3", Path("/store/built/n/build.log"))
        reporter.build_finished(
            "cext 1.0",
            ok=True,
            seconds=3.21,
            result="repaired to manylinux_2_28_x86_64 (nothing vendored)",
        )
        reporter.build_finished(
            "numpy 2.1.3",
            ok=False,
            seconds=185.4,
            result="the build failed (log: /store/built/n/build.log)",
        )
        assert stream.getvalue().splitlines() == [
            "Building cext 1.0 from source",
            "Building numpy 2.1.3 from source",
            "Built cext 1.0 in 3.2s: repaired to manylinux_2_28_x86_64 (nothing vendored)",
            "Failed to build numpy 2.1.3 after 3m05s: the build failed "
            "(log: /store/built/n/build.log)",
        ]

    def test_credentials_in_a_result_are_masked(self):
        """A result quoting an index URL with a password shows it masked."""
        stream = io.StringIO()
        PlainReporter(stream).build_finished(
            "cext 1.0",
            ok=False,
            seconds=1.0,
            result="cannot lock from https://user:s3cret@example.invalid/simple",
        )
        assert "s3cret" not in stream.getvalue() and "user:****@" in stream.getvalue()

    def test_a_fetched_size_rounding_up_to_the_next_unit_reads_in_it(self):
        """999,960 bytes read as 1.0 MB, never as 1000.0 kB."""
        stream = io.StringIO()
        PlainReporter(stream).download_file_done("numpy-2.1.3.whl", 999_960)
        assert stream.getvalue() == "  fetched numpy-2.1.3.whl (1.0 MB)\n"


class TestLastLogLine:
    def test_the_last_line_that_says_something_without_escapes(self, tmp_path):
        """Blank lines, colours and carriage-return bars are dropped from the tail."""
        log = tmp_path / "build.log"
        log.write_bytes(
            b"$ python -m build\n\x1b[32m[3/17] Compiling C object x.o\x1b[0m\r\n  \n\n"
        )
        assert last_log_line(log) == "[3/17] Compiling C object x.o"

    def test_a_missing_or_empty_log_is_an_empty_line(self, tmp_path):
        """A log not written yet shows nothing rather than failing."""
        assert last_log_line(tmp_path / "nothing.log") == ""
        (tmp_path / "empty.log").write_text("")
        assert last_log_line(tmp_path / "empty.log") == ""


class TestBuildsView:
    def test_each_running_build_with_its_time_and_its_logs_last_line(self, tmp_path):
        """The view lists the running builds by name, how long each has run, its log's tail
        (as written: brackets in it are not markup)."""
        clock = Ticks(100.0)
        view = BuildsView(clock)
        cext, numpy = tmp_path / "cext.log", tmp_path / "numpy.log"
        cext.write_text("# cext 1.0\n[backend] gcc -c speedups.c\n")
        numpy.write_text("")
        view.start("cext 1.0", cext)
        clock.now = 40.0
        view.start("numpy 2.1.3", numpy)
        clock.now = 107.5
        assert rendered(view) == [
            "Building 2 packages from source",
            "cext 1.0    0:07 [backend] gcc -c speedups.c",
            "numpy 2.1.3 1:07",
        ]

    def test_the_logs_are_tailed_as_the_builds_write_them(self, tmp_path):
        """Drawn again, the view shows what the log says now; finished builds leave it."""
        view = BuildsView(Ticks(0.0))
        log = tmp_path / "build.log"
        log.write_text("configuring\n")
        view.start("cext 1.0", log)
        view.start("other 1.0", tmp_path / "other.log")
        assert rendered(view)[1] == "cext 1.0  0:00 configuring"
        with log.open("a") as f:
            f.write("linking _speedups.so\n")
        view.finish("other 1.0")
        assert rendered(view) == [
            "Building 1 package from source",
            "cext 1.0 0:00 linking _speedups.so",
        ]

    def test_a_long_log_line_is_cut_to_the_width(self, tmp_path):
        """A line wider than the terminal is cut, keeping the name and time whole."""
        log = tmp_path / "build.log"
        log.write_text("x" * 500 + "\n")
        view = BuildsView(Ticks(0.0))
        view.start("cext 1.0", log)
        [_, row] = rendered(view, width=40)
        assert row.startswith("cext 1.0 0:00 xxx") and len(row) == 40


class TestRichReporter:
    def _reporter(self) -> tuple[RichReporter, io.StringIO]:
        out = io.StringIO()
        console = Console(file=out, width=80, force_terminal=True, color_system=None)
        return RichReporter(console, clock=Ticks(0.0)), out

    def test_is_a_reporter(self):
        """RichReporter satisfies the core's Reporter protocol."""
        reporter: Reporter = self._reporter()[0]
        assert reporter is not None

    def test_builds_are_shown_live_and_each_end_stays(self, tmp_path):
        """Running builds are drawn by name; each end is a line that stays after the view goes."""
        reporter, out = self._reporter()
        log = tmp_path / "build.log"
        log.write_text("gcc -c speedups.c\n")
        reporter.build_started("cext 1.0", log)
        reporter.build_started("broken 1.0", tmp_path / "broken.log")
        reporter.build_finished("broken 1.0", ok=False, seconds=0.5, result="the build failed")
        reporter.build_finished("cext 1.0", ok=True, seconds=1.25, result="kept as built")
        text = out.getvalue()
        assert "Building 1 package from source" in text  # drawn as the first one started
        assert "cext 1.0 0:00 gcc -c speedups.c" in text
        assert "Failed to build broken 1.0 after 0.5s: the build failed" in text
        assert "Built cext 1.0 in 1.2s: kept as built" in text

    def test_wheels_fetched_while_builds_run_are_lines_not_a_second_bar(self, tmp_path):
        """A backend asking for wheels mid-build gets its files listed, and nothing breaks."""
        reporter, out = self._reporter()
        reporter.build_started("cext 1.0", tmp_path / "build.log")
        reporter.download_started(1, 1000)
        reporter.download_advanced(1000)
        reporter.download_file_done("cython-3.0-py3-none-any.whl", 1000)
        reporter.download_finished()
        reporter.build_finished("cext 1.0", ok=True, seconds=2.0, result="kept as built")
        text = out.getvalue()
        assert "fetched cython-3.0-py3-none-any.whl (1.0 kB)" in text
        assert "Built cext 1.0 in 2.0s: kept as built" in text

    def test_a_build_starting_under_a_download_bar_is_a_line(self, tmp_path):
        """While a download bar is on show, a build that starts says so in a line."""
        reporter, out = self._reporter()
        reporter.download_started(1, None)
        reporter.build_started("cext 1.0", tmp_path / "build.log")
        reporter.download_finished()
        reporter.build_finished("cext 1.0", ok=True, seconds=2.0, result="kept as built")
        assert "Building cext 1.0 from source" in out.getvalue()

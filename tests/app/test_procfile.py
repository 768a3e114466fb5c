"""Tests for wheelbarrow.app.procfile: the app's process types, by Heroku's rules."""

from __future__ import annotations

from pathlib import Path

from wheelbarrow.app.procfile import ProcessType, parse_procfile, read_procfile


class TestParseProcfile:
    def test_each_process_with_its_name_command_and_line(self) -> None:
        """Comments and blank lines are skipped; the line numbers count them."""
        text = "# processes\n\nweb: gunicorn app:app\nworker:  rq worker  \n"
        procfile = parse_procfile(text, path=Path("Procfile"))
        assert procfile.processes == (
            ProcessType(name="web", command="gunicorn app:app", line=3),
            ProcessType(name="worker", command="rq worker", line=4),
        )

    def test_lines_that_are_no_process_are_skipped(self) -> None:
        """No colon, a name of other characters, or no command: not a process type."""
        text = "just words\nmy web: x\n#web: commented\nweb:\nrelease_1: ./migrate\n"
        procfile = parse_procfile(text, path=Path("Procfile"))
        assert [(p.name, p.line) for p in procfile.processes] == [("release_1", 5)]

    def test_the_command_of_a_name_is_its_first(self) -> None:
        """A repeated name keeps both lines; ``command`` answers with the first."""
        procfile = parse_procfile("web: one\n  web : two\n", path=Path("Procfile"))
        assert [p.command for p in procfile.processes] == ["one", "two"]
        assert (procfile.command("web"), procfile.command("worker")) == ("one", None)


class TestReadProcfile:
    def test_an_app_without_one_has_none(self, tmp_path: Path) -> None:
        """No Procfile, no value."""
        assert read_procfile(tmp_path) is None

    def test_bytes_that_are_not_utf8_do_not_stop_the_reading(self, tmp_path: Path) -> None:
        """A stray byte reads as U+FFFD; the other lines are processes as usual."""
        (tmp_path / "Procfile").write_bytes(b"# caf\xe9\nweb: python app.py\n")
        procfile = read_procfile(tmp_path)
        assert procfile is not None
        assert procfile.path == tmp_path / "Procfile"
        assert procfile.command("web") == "python app.py"

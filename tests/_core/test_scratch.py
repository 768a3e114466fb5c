"""Scratch entries are cleaned once provably stale, never while their owner lives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from wheelbarrow._core.scratch import clean_stale, lease, scratch, try_exclusive


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


class TestScratch:
    def test_entry_and_lock_exist_while_in_use_and_go_after(self, tmp_path: Path) -> None:
        """A scratch directory has a sibling lock while in use; both are gone afterwards."""
        with scratch(tmp_path, "work-") as path:
            assert path.is_dir()
            assert (tmp_path / (path.name + ".lock")).is_file()
            (path / "f").write_text("x")
        assert names(tmp_path) == []

    def test_a_renamed_result_is_kept(self, tmp_path: Path) -> None:
        """Renaming the entry away keeps it: that is how results leave scratch space."""
        with scratch(tmp_path, "work-") as path:
            (path / "f").write_text("x")
            path.rename(tmp_path / "final")
        assert names(tmp_path) == ["final"]

    def test_a_live_entry_is_not_cleaned(self, tmp_path: Path) -> None:
        """clean_stale leaves the entry of a running owner alone."""
        with scratch(tmp_path, "work-") as path:
            assert clean_stale(tmp_path, "work-") == []
            assert path.is_dir()

    def test_an_entry_of_a_killed_owner_is_cleaned(self, tmp_path: Path) -> None:
        """A process killed with SIGKILL mid-work leaves an entry that the next run removes."""
        code = textwrap.dedent(
            f"""
            import os, sys, time
            from pathlib import Path
            from wheelbarrow._core.scratch import scratch
            with scratch(Path({str(tmp_path)!r}), "work-") as p:
                (p / "half").write_text("x")
                print("ready", flush=True)
                time.sleep(60)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        left = names(tmp_path)
        assert len(left) == 2, left
        removed = clean_stale(tmp_path, "work-")
        assert [p.name for p in removed] == [left[0]]
        assert names(tmp_path) == []

    def test_an_entry_without_its_lock_is_cleaned(self, tmp_path: Path) -> None:
        """An entry named like scratch whose lock is gone was orphaned, and goes."""
        (tmp_path / "work-123-0a1b2c3d").mkdir()
        assert [p.name for p in clean_stale(tmp_path, "work-")] == ["work-123-0a1b2c3d"]

    def test_what_wheelbarrow_did_not_create_is_left_alone(self, tmp_path: Path) -> None:
        """Files that merely share the prefix, and other files, are never removed."""
        (tmp_path / "work-notes.txt").write_text("mine")
        (tmp_path / "other").mkdir()
        assert clean_stale(tmp_path, "work-") == []
        assert names(tmp_path) == ["other", "work-notes.txt"]

    def test_a_file_entry(self, tmp_path: Path) -> None:
        """With directory=False the path is free for a file, cleaned the same way."""
        with scratch(tmp_path, "blob-", directory=False) as path:
            assert not path.exists()
            path.write_bytes(b"data")
        assert names(tmp_path) == []


class TestLease:
    def test_exclusive_is_refused_while_a_lease_is_held(self, tmp_path: Path) -> None:
        """try_exclusive fails while another holder has the shared lease, and succeeds after."""
        code = textwrap.dedent(
            f"""
            import time
            from pathlib import Path
            from wheelbarrow._core.scratch import lease
            with lease(Path({str(tmp_path)!r}), "env-x"):
                print("held", flush=True)
                time.sleep(60)
            """
        )
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "held"
            with try_exclusive(tmp_path, "env-x") as taken:
                assert taken is False
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        with try_exclusive(tmp_path, "env-x") as taken:
            assert taken is True

    def test_shared_leases_coexist(self, tmp_path: Path) -> None:
        """Two users may hold the same entry at once."""
        with lease(tmp_path, "k"), lease(tmp_path, "k"):
            pass


class TestStoreTmp:
    def test_an_empty_prefix_cleans_every_kind_of_scratch_entry(self, tmp_path: Path) -> None:
        """A directory wholly given to scratch (the store's tmp/) is cleaned with prefix ''."""
        (tmp_path / "env-abc-123-0a1b2c3d").mkdir()
        (tmp_path / "blob-77-deadbeef").write_bytes(b"x")
        (tmp_path / "README").write_text("not scratch")
        with scratch(tmp_path, "wheelhouse-k-") as live:
            removed = sorted(p.name for p in clean_stale(tmp_path, ""))
            assert removed == ["blob-77-deadbeef", "env-abc-123-0a1b2c3d"]
            assert live.is_dir()
        assert names(tmp_path) == ["README"]

"""Tests for wheelbarrow.ship.heroku.profile: the .profile.d script and WEB_CONCURRENCY."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from wheelbarrow.ship.heroku.profile import (
    machine_memory_bytes,
    web_concurrency,
    write_profile,
)

MiB = 1024 * 1024
GiB = 1024 * MiB

SHELLS = [
    pytest.param(
        name, marks=pytest.mark.skipif(shutil.which(name) is None, reason=f"no {name} here")
    )
    for name in ("bash", "sh", "dash")
]

# The script's own variables, none of which may outlive it.
SCRATCH = ("mem", "file", "value", "key", "unit", "cores", "workers")
LEFTOVER = "".join(f"${{_wb_{name}+{name} }}" for name in SCRATCH)

# Print what the script left behind, then prove the shell went on after sourcing it.
PROBE = f"""\
. "$HOME/.profile.d/wheelbarrow.sh"
echo "PATH=$PATH"
echo "PYTHONUNBUFFERED=$PYTHONUNBUFFERED"
echo "LANG=$LANG"
echo "WEB_CONCURRENCY=$WEB_CONCURRENCY"
echo "PYTHONHOME=${{PYTHONHOME-<unset>}}"
echo "LEFTOVER={LEFTOVER}"
echo "after"
"""


def source(
    shell: str, home: Path, *, env: dict[str, str] | None = None, prefix: str = ""
) -> dict[str, str]:
    """Source the script in ``shell`` with HOME at ``home``; the variables it printed."""
    base = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    executable = shutil.which(shell)
    assert executable is not None
    result = subprocess.run(
        [executable, "-c", prefix + PROBE],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[-1] == "after"
    return dict(line.split("=", 1) for line in lines[:-1])


# Runs the probe in a private mount namespace where /sys/fs/cgroup and
# /proc/meminfo are the fake ones under $ROOT: the host's stay untouched.
FAKE_MACHINE = """\
set -e
mount -t tmpfs none /sys/fs/cgroup
cp -R "$ROOT/sys/fs/cgroup/." /sys/fs/cgroup/
mount --bind "$ROOT/proc/meminfo" /proc/meminfo
exec "$SHELL_BIN" -c "$PROBE"
"""


def can_fake_the_machine() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        [unshare, "-m", "sh", "-c", "mount -t tmpfs none /sys/fs/cgroup"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return probe.returncode == 0


def this_machine() -> int:
    """The value the script must find here, from the Python reading of the same rule."""
    return web_concurrency(machine_memory_bytes(), len(os.sched_getaffinity(0)))


@pytest.fixture
def app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    write_profile(app, venv_rel=".heroku/venv", runtime_rel=".heroku/python")
    return app


class TestWebConcurrency:
    @pytest.mark.parametrize(
        ("memory", "cores", "expected"),
        [
            (512 * MiB, 8, 2),  # Heroku's Basic / Standard-1X
            (1 * GiB, 8, 4),  # Standard-2X
            (int(2.5 * GiB), 2, 5),  # Performance-M
            (14 * GiB, 8, 17),  # Performance-L
            (None, 2, 5),  # memory unknown: cores alone
            (100 * MiB, 4, 1),  # at least one
            (0, 4, 1),
            (512 * GiB, 64, 32),  # at most 32
            (4 * GiB, 0, 3),  # no cores reported: counted as one
        ],
    )
    def test_rule(self, memory: int | None, cores: int, expected: int) -> None:
        """Workers are min(2 * cores + 1, MiB / 256), between 1 and 32."""
        assert web_concurrency(memory, cores) == expected


class TestMachineMemory:
    def write(self, root: Path, rel: str, text: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def test_cgroup_v2_limit(self, tmp_path: Path) -> None:
        """A cgroup v2 limit is the memory."""
        self.write(tmp_path, "sys/fs/cgroup/memory.max", "536870912\n")
        self.write(tmp_path, "proc/meminfo", "MemTotal:       24684096 kB\n")
        assert machine_memory_bytes(tmp_path) == 512 * MiB

    def test_v2_max_falls_back_to_v1(self, tmp_path: Path) -> None:
        """``max`` is no limit, so the cgroup v1 limit is read next."""
        self.write(tmp_path, "sys/fs/cgroup/memory.max", "max\n")
        self.write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n")
        assert machine_memory_bytes(tmp_path) == GiB

    def test_absurd_limit_falls_back_to_meminfo(self, tmp_path: Path) -> None:
        """cgroup v1's 'unlimited' value is ignored in favour of MemTotal."""
        self.write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
        self.write(tmp_path, "proc/meminfo", "MemFree: 1 kB\nMemTotal:       2048 kB\n")
        assert machine_memory_bytes(tmp_path) == 2048 * 1024

    def test_nothing_readable(self, tmp_path: Path) -> None:
        """Without any of the files the memory is unknown."""
        assert machine_memory_bytes(tmp_path) is None


class TestScript:
    def test_written_atomically_in_profile_d(self, tmp_path: Path) -> None:
        """The script lands in .profile.d/wheelbarrow.sh, replacing an older one whole."""
        target = tmp_path / ".profile.d" / "wheelbarrow.sh"
        target.parent.mkdir()
        target.write_text("old")
        path = write_profile(tmp_path, venv_rel=".venv", runtime_rel=None)
        assert path == target
        assert "$HOME/.venv/bin" in path.read_text()
        assert [p.name for p in target.parent.iterdir()] == ["wheelbarrow.sh"]

    def test_never_names_the_build_directory(self, app: Path) -> None:
        """Every path is under $HOME, so the slug runs wherever it lands."""
        text = (app / ".profile.d" / "wheelbarrow.sh").read_text()
        assert str(app) not in text
        assert "exit" not in text
        assert "set -e" not in text

    @pytest.mark.parametrize("shell", SHELLS)
    def test_sourced_environment(self, shell: str, app: Path) -> None:
        """Sourced at start, it puts the environment first on PATH and sets Python's variables."""
        got = source(shell, app, env={"PYTHONHOME": "/somewhere"})
        assert got == {
            "PATH": f"{app}/.heroku/venv/bin:{app}/.heroku/python/bin:/usr/bin:/bin",
            "PYTHONUNBUFFERED": "true",
            "LANG": "C.UTF-8",
            "WEB_CONCURRENCY": str(this_machine()),
            "PYTHONHOME": "<unset>",
            "LEFTOVER": "",
        }

    @pytest.mark.parametrize("shell", SHELLS)
    def test_follows_home(self, shell: str, app: Path, tmp_path: Path) -> None:
        """The slug moved elsewhere finds its environment under the new HOME."""
        moved = tmp_path / "elsewhere"
        shutil.move(app, moved)
        assert source(shell, moved)["PATH"].startswith(f"{moved}/.heroku/venv/bin:")

    @pytest.mark.parametrize("shell", SHELLS)
    def test_keeps_what_the_app_sets(self, shell: str, app: Path) -> None:
        """Config vars the app sets win over the defaults."""
        got = source(
            shell,
            app,
            env={"WEB_CONCURRENCY": "7", "LANG": "en_US.UTF-8", "PYTHONUNBUFFERED": "1"},
        )
        assert (got["WEB_CONCURRENCY"], got["LANG"], got["PYTHONUNBUFFERED"]) == (
            "7",
            "en_US.UTF-8",
            "1",
        )

    @pytest.mark.parametrize("shell", SHELLS)
    def test_ignores_omp_num_threads(self, shell: str, app: Path) -> None:
        """OMP_NUM_THREADS=1 (common in numeric apps) does not hide the machine's cores."""
        assert source(shell, app, env={"OMP_NUM_THREADS": "1"})["WEB_CONCURRENCY"] == str(
            this_machine()
        )

    @pytest.mark.parametrize("shell", SHELLS)
    def test_safe_in_a_strict_shell(self, shell: str, app: Path) -> None:
        """A shell with -e and -u survives sourcing it and goes on."""
        got = source(shell, app, prefix="set -eu\n")
        assert got["WEB_CONCURRENCY"] == str(this_machine())

    @pytest.mark.parametrize("shell", SHELLS)
    def test_without_runtime(self, shell: str, tmp_path: Path) -> None:
        """Without a runtime of its own only the environment's bin is added, and no empty entry."""
        write_profile(tmp_path, venv_rel=".heroku/venv", runtime_rel=None)
        got = source(shell, tmp_path, env={"PATH": ""})
        assert got["PATH"] == f"{tmp_path}/.heroku/venv/bin"

    @pytest.mark.parametrize(
        "bad", ["/app/.venv", "../venv", ".venv/../..", "my venv", "$(reboot)", "a'b", ""]
    )
    def test_refuses_paths_outside_or_needing_quotes(self, tmp_path: Path, bad: str) -> None:
        """A path that is absolute, leaves the app or needs quoting is refused."""
        with pytest.raises(ValueError, match="venv_rel"):
            write_profile(tmp_path, venv_rel=bad, runtime_rel=None)
        assert not (tmp_path / ".profile.d").exists()


@pytest.mark.skipif(not can_fake_the_machine(), reason="needs root and mount namespaces")
class TestScriptOnOtherMachines:
    """The script's memory reading, run against fake cgroup and meminfo files."""

    @pytest.mark.parametrize("shell", SHELLS)
    @pytest.mark.parametrize(
        "files",
        [
            pytest.param(
                {"sys/fs/cgroup/memory.max": "536870912\n", "proc/meminfo": "MemTotal: 1 kB\n"},
                id="cgroup-v2-512MiB",
            ),
            pytest.param(
                {
                    "sys/fs/cgroup/memory.max": "max\n",
                    "sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n",
                    "proc/meminfo": "MemTotal: 1 kB\n",
                },
                id="v2-max-then-v1-1GiB",
            ),
            pytest.param(
                {
                    "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
                    "proc/meminfo": "MemFree: 5 kB\nMemTotal:  786432 kB\n",
                },
                id="v1-unlimited-then-meminfo-768MiB",
            ),
            pytest.param({"proc/meminfo": "MemTotal:  262144 kB\n"}, id="meminfo-256MiB"),
            pytest.param({"proc/meminfo": "nothing useful\n"}, id="memory-unknown"),
        ],
    )
    def test_memory_rule_matches_python(
        self, shell: str, files: dict[str, str], app: Path, tmp_path: Path
    ) -> None:
        """On any machine the script finds the WEB_CONCURRENCY that web_concurrency() gives."""
        root = tmp_path / "machine"
        (root / "sys/fs/cgroup").mkdir(parents=True)
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        unshare, shell_bin = shutil.which("unshare"), shutil.which(shell)
        assert unshare is not None and shell_bin is not None
        result = subprocess.run(
            [unshare, "-m", "sh", "-c", FAKE_MACHINE],
            env={
                "HOME": str(app),
                "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
                "ROOT": str(root),
                "SHELL_BIN": shell_bin,
                "PROBE": PROBE,
            },
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        got = dict(line.split("=", 1) for line in result.stdout.splitlines()[:-1])
        expected = web_concurrency(machine_memory_bytes(root), len(os.sched_getaffinity(0)))
        assert got["WEB_CONCURRENCY"] == str(expected)

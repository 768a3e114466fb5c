"""A real OCI registry on 127.0.0.1 for tests: Debian's docker-registry, on a free port."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .containers import require
from .net import free_port

REGISTRY_PROGRAM = "docker-registry"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def write_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with one bcrypt entry (the only hash docker-registry accepts)."""
    require("htpasswd")
    done = subprocess.run(
        ["htpasswd", "-Bbn", user, password], capture_output=True, text=True, check=True
    )
    path.write_text(done.stdout.strip() + "\n")
    return path


@dataclass(frozen=True, slots=True)
class LocalRegistry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``, its files live under ``root``."""

    host: str
    root: Path
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        """The end of the registry's log, for failure messages."""
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _config(root: Path, port: int, htpasswd: Path | None) -> str:
    text = (
        "version: 0.1\n"
        "log:\n"
        "  level: info\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {root / 'storage'}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )
    if htpasswd is not None:
        text += f"auth:\n  htpasswd:\n    realm: wheelbarrow-tests\n    path: {htpasswd}\n"
    return text


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401  # up, and asking for credentials
    except OSError:
        return False


@contextlib.contextmanager
def serve_registry(root: Path, *, htpasswd: Path | None = None) -> Iterator[LocalRegistry]:
    """Run docker-registry on a free port of 127.0.0.1 with its storage under ``root``.

    With ``htpasswd`` it asks for Basic credentials. Yields once ``/v2/``
    answers; stops the registry on exit (terminate, then kill after a bounded wait).
    """
    require(REGISTRY_PROGRAM)
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # another process may take the free port before the registry does
        port = free_port()
        config = root / "config.yml"
        config.write_text(_config(root, port, htpasswd))
        log = root / "registry.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [REGISTRY_PROGRAM, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        registry = LocalRegistry(host=f"127.0.0.1:{port}", root=root, log=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if _answers(f"http://{registry.host}/v2/"):
                    break
                time.sleep(0.05)
            else:
                if process.poll() is None:
                    raise RuntimeError(
                        f"docker-registry did not answer on {registry.host} within "
                        f"{START_TIMEOUT:.0f} s:\n{registry.log_tail()}"
                    )
                if "address already in use" in registry.log_tail().lower():
                    continue
                raise RuntimeError(
                    f"docker-registry exited with {process.returncode}:\n{registry.log_tail()}"
                )
            yield registry
            return
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)
    raise RuntimeError("docker-registry found no free port on 127.0.0.1 in 3 tries")

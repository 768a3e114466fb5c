"""Start an app's Procfile web process from an environment, send one request, stop it.

Used by scripts/demo and by the end-to-end test: the process runs exactly as the
Procfile says, with PORT set and the environment's bin/ first on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TEXTS = ["the cat sat on the mat", "the cat sat on the mat", "stock prices fell sharply today"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def web_command(app: Path) -> str:
    """The ``web:`` line of the app's Procfile."""
    for line in (app / "Procfile").read_text(encoding="utf-8").splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "web":
            return command.strip()
    raise SystemExit(f"{app / 'Procfile'}: no web process")


def post(url: str, payload: object) -> tuple[int, object]:
    """POST JSON and return (status, decoded JSON body)."""
    data = json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start(app: Path, env: Path, port: int) -> subprocess.Popen[bytes]:
    """Run the web process with the environment on PATH, bound to 127.0.0.1."""
    environ = dict(
        os.environ,
        PORT=str(port),
        BIND_ADDRESS="127.0.0.1",
        WEB_CONCURRENCY="1",
        PATH=f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    environ.pop("PYTHONPATH", None)
    return subprocess.Popen(
        ["sh", "-c", "exec " + web_command(app)], cwd=app, env=environ, start_new_session=True
    )


def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Poll until the port accepts connections, or fail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the web process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listened on 127.0.0.1:{port} after {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the whole process group (gunicorn and its workers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", type=Path, required=True)
    parser.add_argument("--env", type=Path, required=True)
    args = parser.parse_args()
    port = free_port()
    proc = start(args.app.resolve(), args.env.resolve(), port)
    try:
        wait_until_up(port, proc)
        status, body = post(f"http://127.0.0.1:{port}/similarity", {"texts": TEXTS})
        print(f"POST /similarity {json.dumps({'texts': TEXTS})}")
        print(f"-> {status} {json.dumps(body)}")
        matrix = body["similarity"] if isinstance(body, dict) else None
        if status != 200 or not matrix or abs(matrix[0][1] - 1.0) > 1e-6:
            print("unexpected answer", file=sys.stderr)
            return 1
    finally:
        stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

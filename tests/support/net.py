"""Loopback networking for tests: a free port, and waiting for a server's JSON answer."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now: another process may take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_json(
    url: str,
    *,
    payload: object | None = None,
    timeout: float = 30,
    diagnose: Callable[[], str] = lambda: "",
) -> Any:
    """GET (or POST ``payload`` as JSON to) ``url`` until a server answers; its JSON body.

    Fails after ``timeout`` seconds with what ``diagnose`` says (a container's logs).
    """
    data = json.dumps(payload).encode() if payload is not None else None
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer from {url}:\n{diagnose()}") from None
            time.sleep(0.3)

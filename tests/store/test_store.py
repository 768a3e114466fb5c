"""The content-addressed store: blobs under their sha256, and named links to them."""

from __future__ import annotations

import threading
from pathlib import Path

from wheelbarrow.store.store import Store


class TestNamed:
    def test_threads_naming_one_blob_at_once_all_get_it(self, tmp_path: Path) -> None:
        """Two source builds of one process asking for the same build wheel's named link
        at the same moment both get it (their temporary names used to collide)."""
        wheel = tmp_path / "demo-1.0-py3-none-any.whl"
        wheel.write_bytes(b"not really a zip, but a blob all the same" * 100)
        failures: list[BaseException] = []
        for round_ in range(30):
            store = Store(tmp_path / f"store{round_}")
            sha256 = _add(store, wheel)
            barrier = threading.Barrier(8)
            results: list[Path] = []

            def name_it(
                store: Store = store,
                sha256: str = sha256,
                barrier: threading.Barrier = barrier,
                results: list[Path] = results,
            ) -> None:
                barrier.wait()
                try:
                    results.append(store.named(sha256, wheel.name))
                except BaseException as exc:  # noqa: BLE001 - collected and reported below
                    failures.append(exc)

            threads = [threading.Thread(target=name_it) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not failures, failures[0]
            assert len(set(results)) == 1 and results[0].read_bytes() == wheel.read_bytes()
            assert [p.name for p in results[0].parent.iterdir()] == [wheel.name]


def _add(store: Store, path: Path) -> str:
    """Put ``path`` into the store as a blob without the wheel check (it is no zip)."""
    import hashlib

    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    with store.writer(sha256=sha256, size=len(data), label=path.name) as w:
        w.write(data)
    return sha256

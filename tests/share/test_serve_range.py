"""Tests for wheelbarrow.share.serve's byte ranges: parse_range, and httpx against the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from wheelbarrow.share.serve import UNSATISFIABLE, ServerHandle, make_server, parse_range

BODY = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable
SIZE = len(BODY)


class TestParseRange:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("bytes=0-99", (0, 99)),
            ("bytes=100-", (100, SIZE - 1)),
            ("bytes=-100", (SIZE - 100, SIZE - 1)),
            ("bytes=-999999", (0, SIZE - 1)),
            ("bytes=10-999999", (10, SIZE - 1)),
            ("BYTES = 5-5", (5, 5)),
        ],
    )
    def test_single_ranges(self, header: str, expected: tuple[int, int]) -> None:
        """A first-last, open or suffix range gives inclusive bounds clipped to the file."""
        assert parse_range(header, SIZE) == expected

    @pytest.mark.parametrize(
        "header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"]
    )
    def test_unsatisfiable(self, header: str) -> None:
        """A range starting at or past the end, or a suffix of nothing, cannot be served."""
        assert parse_range(header, SIZE) == UNSATISFIABLE

    @pytest.mark.parametrize(
        "header", [None, "items=0-1", "bytes=0-1,5-9", "bytes=9-2", "bytes=a-b", "bytes=-", "bytes"]
    )
    def test_whole_file(self, header: str | None) -> None:
        """No header, another unit, several ranges or a malformed one: the whole file."""
        assert parse_range(header, SIZE) is None

    def test_any_range_of_an_empty_file_is_unsatisfiable(self) -> None:
        """An empty file has no bytes to give: open and suffix ranges alike."""
        assert parse_range("bytes=0-", 0) == UNSATISFIABLE
        assert parse_range("bytes=-5", 0) == UNSATISFIABLE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    """A served directory holding one wheel-named file of BODY, and an index page."""
    (tmp_path / "simple").mkdir()
    (tmp_path / "simple" / "index.html").write_text("<html></html>\n")
    (tmp_path / "a-1.0-py3-none-any.whl").write_bytes(BODY)
    with make_server(tmp_path) as handle:
        yield handle


@pytest.fixture
def client(server: ServerHandle) -> Iterator[httpx.Client]:
    """An httpx client for the server (no proxies from the environment)."""
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as c:
        yield c


WHEEL = "/a-1.0-py3-none-any.whl"


class TestRangeRequests:
    def test_whole_file_says_ranges_are_accepted(self, client: httpx.Client) -> None:
        """A plain GET is 200 with the whole body and Accept-Ranges: bytes."""
        answer = client.get(WHEEL)
        assert answer.status_code == 200
        assert answer.headers["accept-ranges"] == "bytes"
        assert "content-range" not in answer.headers
        assert answer.content == BODY

    @pytest.mark.parametrize(
        ("header", "first", "last"),
        [
            ("bytes=0-99", 0, 99),
            ("bytes=5000-", 5000, SIZE - 1),
            ("bytes=-22", SIZE - 22, SIZE - 1),
            ("bytes=10000-999999", 10000, SIZE - 1),
        ],
    )
    def test_a_range_is_206_with_its_bytes(
        self, client: httpx.Client, header: str, first: int, last: int
    ) -> None:
        """A satisfiable range is 206 with Content-Range, its length, and exactly those bytes."""
        answer = client.get(WHEEL, headers={"Range": header})
        assert answer.status_code == 206
        assert answer.headers["content-range"] == f"bytes {first}-{last}/{SIZE}"
        assert answer.headers["content-length"] == str(last - first + 1)
        assert answer.content == BODY[first : last + 1]

    def test_past_the_end_is_416_with_the_size(self, client: httpx.Client) -> None:
        """A range past the end is 416 with Content-Range: bytes */SIZE."""
        answer = client.get(WHEEL, headers={"Range": f"bytes={SIZE}-"})
        assert answer.status_code == 416
        assert answer.headers["content-range"] == f"bytes */{SIZE}"

    def test_several_ranges_are_answered_whole(self, client: httpx.Client) -> None:
        """A multi-range request gets the whole file with 200, as the RFC allows."""
        answer = client.get(WHEEL, headers={"Range": "bytes=0-9,20-29"})
        assert answer.status_code == 200
        assert answer.content == BODY

    def test_if_range_gets_the_whole_file(self, client: httpx.Client) -> None:
        """With If-Range (a validator never matched here) the whole file is sent, not a part."""
        answer = client.get(WHEEL, headers={"Range": "bytes=0-9", "If-Range": '"x"'})
        assert answer.status_code == 200
        assert answer.content == BODY

    def test_head_with_a_range_sends_its_headers_only(self, client: httpx.Client) -> None:
        """HEAD with a Range says what a GET would (206, Content-Range) and sends no body."""
        answer = client.head(WHEEL, headers={"Range": "bytes=-10"})
        assert answer.status_code == 206
        assert answer.headers["content-range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
        assert answer.content == b""

    def test_ranges_over_one_kept_alive_connection(self, client: httpx.Client) -> None:
        """Reading a file in pieces, as a lazy wheel reader does, reassembles it exactly."""
        pieces = [
            client.get(WHEEL, headers={"Range": f"bytes={start}-{start + 4095}"}).content
            for start in range(0, SIZE, 4096)
        ]
        assert b"".join(pieces) == BODY

    def test_pages_take_ranges_too(self, client: httpx.Client) -> None:
        """An index page is a file like any other: a range of it is 206."""
        answer = client.get("/simple/", headers={"Range": "bytes=0-5"})
        assert answer.status_code == 206
        assert answer.content == b"<html>"

"""pip's requirements-file syntax: comments, continuations, options, URLs, paths and hashes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from wheelbarrow._core.text import plural

# pip's own rules (pip/_internal/req/req_file.py): a comment starts at a line's
# start or after whitespace, so URL fragments such as "#sha256=" survive.
COMMENT = re.compile(r"(^|\s+)#.*$")
ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")
# Options begin at the first token that starts with "-", as in pip.
OPTIONS_START = re.compile(r"(?:^|\s)-")
# Two characters at least, so that a Windows drive ("C:\\x") is not a scheme.
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")
EXTRAS = re.compile(r"^(.+?)(\[[^\]]+\])$")
SINGLE_EQUALS = re.compile(r"(?<![=!<>~])=(?![=~])")

URL_SCHEMES = frozenset({"http", "https", "file"})
VCS = frozenset({"git", "hg", "svn", "bzr"})
ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar")
HASH_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
HEX = re.compile(r"[0-9a-fA-F]+")

SHORT_OPTIONS = {
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
    "-i": "--index-url",
    "-f": "--find-links",
}
VALUE_OPTIONS = frozenset(
    {
        "--requirement",
        "--constraint",
        "--editable",
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "--only-binary",
        "--no-binary",
        "--trusted-host",
        "--hash",
    }
)
# Options whose value may be a URL, checked as one when it has a scheme.
URL_OPTIONS = frozenset({"--index-url", "--extra-index-url", "--find-links"})
FLAG_OPTIONS = frozenset({"--no-index", "--pre", "--prefer-binary", "--require-hashes"})
SUPPORTED = (
    "-r, -c, -i/--index-url, --extra-index-url, -f/--find-links, --no-index, --pre, "
    "--prefer-binary, --only-binary, --no-binary, --trusted-host, --require-hashes, --hash"
)
FORMAT_HINT = (
    "fix the lines listed above; the syntax is pip's requirements file format "
    "(https://pip.pypa.io/en/stable/reference/requirements-file-format/)"
)


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash continuations; each logical line keeps its first physical line number."""
    start = 0
    parts: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        is_comment = COMMENT.match(line) is not None
        if line.endswith("\\") and not is_comment:
            if not parts:
                start = number
            parts.append(line[:-1])
            continue
        if is_comment:
            # As pip: a comment ends a continuation, and the leading space
            # makes sure it is still stripped once joined.
            line = " " + line
        if parts:
            parts.append(line)
            yield start, "".join(parts)
            parts = []
        else:
            yield number, line
    if parts:
        yield start, "".join(parts)


def is_url(text: str) -> bool:
    match = SCHEME.match(text)
    if match is None:
        return False
    scheme = match.group(1).lower()
    vcs, plus, _ = scheme.partition("+")
    return scheme in URL_SCHEMES or (bool(plus) and vcs in VCS)


def looks_like_path(text: str) -> bool:
    def pathy(part: str) -> bool:
        return "/" in part or "\\" in part or part.startswith(".")

    head, at, _ = text.partition("@")
    if at and not pathy(head.strip()):
        return False  # "name @ URL"
    location = text.split(";", 1)[0].strip()
    return pathy(location) or location.lower().endswith(ARCHIVES)


def split_fragment(url: str) -> tuple[str, str | None]:
    """Remove ``egg=NAME`` from a URL's fragment; return the URL and the name."""
    parts = urlsplit(url)
    if not parts.fragment:
        return url, None
    pairs = parse_qsl(parts.fragment, keep_blank_values=True)
    eggs = [value for key, value in pairs if key == "egg"]
    if not eggs:
        return url, None
    # safe="/" keeps e.g. "subdirectory=a/b" readable, as it was written.
    rest = urlencode([(key, value) for key, value in pairs if key != "egg"], safe="/")
    return urlunsplit(parts._replace(fragment=rest)), eggs[-1]


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a URL that later steps (uv, downloads) can use, or ``None``."""
    try:
        # .port checks the port's range and digits, which urlsplit alone leaves for later.
        urlsplit(url).port  # noqa: B018
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    return None


def name_from_filename(url: str) -> str | None:
    filename = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[0]
        if filename.endswith((".tar.gz", ".zip")):
            return parse_sdist_filename(filename)[0]
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return None


def requirement_hint(text: str) -> str | None:
    if "=>" in text:
        return "did you mean '>='?"
    if "=<" in text:
        return "did you mean '<='?"
    # A URL's query ("?a=b") has single "=" signs that are not a typo.
    if "@" not in text and SINGLE_EQUALS.search(text.split(";", 1)[0]):
        return "did you mean '=='?"
    return None


def hash_problem(value: str) -> str | None:
    algorithm, colon, digest = value.partition(":")
    if not colon:
        return f"invalid hash {value!r}: expected ALGORITHM:DIGEST, e.g. 'sha256:<64 hex digits>'"
    length = HASH_LENGTHS.get(algorithm)
    if length is None:
        allowed = ", ".join(HASH_LENGTHS)
        return f"invalid hash {value!r}: the algorithm must be one of {allowed}"
    if len(digest) != length or not HEX.fullmatch(digest):
        return (
            f"invalid hash {value!r}: a {algorithm} digest is {length} hexadecimal "
            f"characters, got {plural(len(digest), 'character')}"
            + ("" if HEX.fullmatch(digest) else " that are not all hexadecimal")
        )
    return None

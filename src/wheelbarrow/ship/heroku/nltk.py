"""NLTK corpora listed in ``nltk.txt``, downloaded into the slug as Heroku's Python buildpack does.

When the environment has ``nltk`` and the app has ``nltk.txt`` (package or
collection ids, one or more a line, ``#`` comments), NLTK's own downloader
fetches them into ``.heroku/python/nltk_data``, and ``NLTK_DATA`` points
there at run time. ``NLTK_DOWNLOAD_URL`` (the variable NLTK's downloader
itself reads) names another index. Unlike the official buildpack, every id is
checked against the index first: an unknown id or a malformed line fails the
build naming ``nltk.txt`` and the line, before anything is downloaded.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import BuildpackError, InputError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.runner import Completed, Runner, marked_report
from wheelbarrow._core.text import plural
from wheelbarrow.ship.heroku.output import HerokuReporter

NLTK_TXT = "nltk.txt"
DATA_REL = ".heroku/python/nltk_data"  # where the official buildpack puts them
URL_VAR = "NLTK_DOWNLOAD_URL"
PROFILE_REL = ".profile.d/wheelbarrow-nltk.sh"
# What NLTK's index uses for ids ("punkt_tab", "omw-1.4", "averaged_perceptron_tagger_eng").
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_MARK = "wheelbarrow-nltk:"

# Run by the app's interpreter, with NLTK's own downloader.
_DOWNLOAD = r"""
import json, sys
from nltk.downloader import Downloader
url, target, ids = sys.argv[1] or None, sys.argv[2], sys.argv[3:]
downloader = Downloader(server_index_url=url)
def say(result):
    sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
    sys.exit(0)
try:
    known = {p.id for p in downloader.packages()} | {c.id for c in downloader.collections()}
except Exception as exc:
    say({"index_error": "%s: %s" % (type(exc).__name__, exc), "url": downloader.url})
unknown = [i for i in ids if i not in known]
if unknown:
    say({"unknown": unknown, "known": sorted(known), "url": downloader.url})
failed = []
for i in ids:
    done = downloader.download(
        i, download_dir=target, halt_on_error=True, print_error_to=sys.stdout
    )
    if not done:
        failed.append(i)
say({"failed": failed, "url": downloader.url})
""".replace("MARK", repr(_MARK))


class NltkTxtError(InputError):
    """``nltk.txt`` names something that is not an NLTK id, or one the index lacks."""


class NltkDownloadError(BuildpackError):
    """NLTK's downloader could not read its index or fetch a corpus."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Wanted:
    """One id of ``nltk.txt`` and the line it is on."""

    id: str
    line: int


def read_nltk_txt(path: Path) -> tuple[Wanted, ...]:
    """The ids ``path`` lists, in order and once each; every malformed entry is an error."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    wanted: list[Wanted] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        for token in line.split("#", 1)[0].split():
            if not _ID.fullmatch(token):
                problems.append(f"{path.name}:{number}: {token!r} is not an NLTK package id")
            elif token not in seen:
                seen.add(token)
                wanted.append(Wanted(id=token, line=number))
    if problems:
        raise NltkTxtError(
            "\n".join(problems),
            hint=f"list NLTK package ids in {path.name}, such as 'punkt_tab' or 'stopwords'",
        )
    return tuple(wanted)


def has_nltk(venv: Path) -> bool:
    """Whether the environment at ``venv`` has the ``nltk`` package."""
    return any(venv.glob("lib/python*/site-packages/nltk/__init__.py"))


def download_corpora(
    app_dir: Path,
    venv: Path,
    *,
    data_dir: Path,
    env: Mapping[str, str],
    runner: Runner,
    out: HerokuReporter,
) -> bool:
    """Download what ``nltk.txt`` lists into ``data_dir``; True when something was.

    ``env`` is the process environment with the app's config vars in it.
    """
    if not has_nltk(venv):
        return False
    out.step("Downloading NLTK corpora...")
    listing = app_dir / NLTK_TXT
    if not listing.is_file():
        out.detail(f"'{NLTK_TXT}' not found, not downloading any corpora")
        return False
    wanted = read_nltk_txt(listing)
    if not wanted:
        out.detail(f"'{NLTK_TXT}' lists no corpora, not downloading any")
        return False
    ids = [w.id for w in wanted]
    out.step(f"Downloading NLTK packages: {' '.join(ids)}")
    data_dir.mkdir(parents=True, exist_ok=True)
    done = runner(
        [str(venv / "bin" / "python"), "-c", _DOWNLOAD, env.get(URL_VAR, ""), str(data_dir), *ids],
        cwd=app_dir,
        env=dict(env),
    )
    result = marked_report(done.stdout, _MARK)
    log = [line for line in done.stdout.splitlines() if line and not line.startswith(_MARK)]
    if log:
        out.detail("\n".join(log))
    _check_result(done, result, wanted, listing)
    return True


def _check_result(
    done: Completed,
    result: dict[str, Any] | None,
    wanted: Sequence[Wanted],
    listing: Path,
) -> None:
    """Raise what went wrong in the downloader's run: its exit, the index, unknown ids, failures."""
    if done.returncode != 0 or result is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise NltkDownloadError(
            f"Unable to download NLTK data: NLTK's downloader exited with "
            f"{done.returncode}: {tail}",
            hint="see the output above; check that the installed nltk works",
        )
    url = result.get("url", "")
    if "index_error" in result:
        raise NltkDownloadError(
            f"Unable to download NLTK data: cannot read NLTK's index at {url}: "
            f"{result['index_error']}",
            hint=f"check the network, or set the config var {URL_VAR} to a reachable index",
        )
    if result.get("unknown"):
        unknown = set(result["unknown"])
        known = result.get("known", [])
        lines = []
        for w in wanted:
            if w.id in unknown:
                close = difflib.get_close_matches(w.id, known, n=1)
                lines.append(
                    f"{listing.name}:{w.line}: {w.id!r} is not in NLTK's index at {url}"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                )
        raise NltkTxtError(
            "\n".join(lines),
            hint=f"fix {listing.name}: its ids must be those NLTK's index lists",
        )
    if result.get("failed"):
        raise NltkDownloadError(
            f"Unable to download NLTK data: {plural(len(result['failed']), 'package')} "
            f"failed: {', '.join(result['failed'])} (from {url})",
            hint="see the downloader's output above",
        )


def write_nltk_profile(build_dir: Path, data_rel: str = DATA_REL) -> Path:
    """A .profile.d script setting NLTK_DATA to the slug's corpora, unless the app sets it."""
    path = build_dir / PROFILE_REL
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        path,
        "# Written by wheelbarrow: where nltk.txt's corpora are.\n"
        f'export NLTK_DATA="${{NLTK_DATA:-$HOME/{data_rel}}}"\n',
    )
    return path

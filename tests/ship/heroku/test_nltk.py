"""nltk.txt's corpora, downloaded by NLTK's own downloader from an index served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from pathlib import Path

import pytest
from support import make_wheel
from support.heroku import compile_, restore_like_the_lifecycle
from support.heroku import run_cnb_build as run_build

from wheelbarrow.ship.heroku.nltk import NltkTxtError, read_nltk_txt

NLTK = "nltk==3.8.1"  # an old release: its downloader API is the one the buildpack relies on


def make_nltk_index(directory: Path, base_url: str, ids: list[str]) -> None:
    """An index.xml in NLTK's format and one corpus zip per id, as nltk_data's gh-pages has."""
    (directory / "corpora").mkdir(parents=True, exist_ok=True)
    packages = []
    for corpus in ids:
        buffer = io.BytesIO()
        members = {f"{corpus}/README": f"the {corpus} corpus\n", f"{corpus}/words": "alpha\nbeta\n"}
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, text in members.items():
                archive.writestr(name, text)
        data = buffer.getvalue()
        (directory / "corpora" / f"{corpus}.zip").write_bytes(data)
        packages.append(
            f'<package id="{corpus}" name="The {corpus} corpus" subdir="corpora" unzip="1"'
            f' url="{base_url}/corpora/{corpus}.zip" size="{len(data)}"'
            f' unzipped_size="{sum(map(len, members.values()))}"'
            # NLTK's index format names the MD5 of each file.
            f' checksum="{hashlib.md5(data, usedforsecurity=False).hexdigest()}" />'
        )
    (directory / "index.xml").write_text(
        '<?xml version="1.0"?>\n<nltk_data>\n<packages>\n'
        + "\n".join(packages)
        + "\n</packages>\n<collections>\n</collections>\n</nltk_data>\n"
    )


@pytest.fixture
def nltk_index(tmp_path: Path, local_index):
    """The URL of an NLTK index on 127.0.0.1 offering the corpora 'tinycorpus' and 'stopwords'."""
    files = tmp_path / "nltk_index"
    files.mkdir()
    served = local_index(files)
    make_nltk_index(files, served.base_url.rstrip("/"), ["tinycorpus", "stopwords"])
    return served.base_url.rstrip("/") + "/index.xml"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the module's builds: nltk is fetched once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def nltk_app(tmp_path: Path, shared_cache: Path, nltk_index: str):
    """An app needing nltk, with NLTK_DOWNLOAD_URL set: (build, cache, env, home)."""
    build = tmp_path / "build_1234"
    build.mkdir()
    (build / "requirements.txt").write_text(NLTK + "\n")
    (build / "nltk.txt").write_text("tinycorpus\n")
    env = tmp_path / "env"
    env.mkdir()
    (env / "NLTK_DOWNLOAD_URL").write_text(nltk_index)
    return build, shared_cache, env, tmp_path / "app"


def error_lines(out: str) -> list[str]:
    """The `` !     `` lines of the build log, without the prefix."""
    return [line.removeprefix(" !     ") for line in out.splitlines() if line.startswith(" !     ")]


@pytest.mark.network
class TestNltkInBinCompile:
    def test_the_listed_corpora_are_in_the_slug_and_found_at_run_time(self, nltk_app):
        """The corpus lands in .heroku/python/nltk_data; the profile's NLTK_DATA finds it."""
        build, cache, env, home = nltk_app
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        data = build / ".heroku" / "python" / "nltk_data"
        assert (
            "-----> Downloading NLTK corpora...\n"
            "-----> Downloading NLTK packages: tinycorpus\n"
            "       [nltk_data] Downloading package tinycorpus to "
        ) in out
        assert "       [nltk_data]   Unzipping corpora/tinycorpus.zip.\n" in out
        script = (
            f"export HOME={build} && . ./.profile.d/wheelbarrow-nltk.sh && "
            "./.heroku/venv/bin/python -c "
            "\"import nltk; print(nltk.data.find('corpora/tinycorpus/words'))\""
        )
        done = subprocess.run(["bash", "-c", script], cwd=build, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(data / "corpora" / "tinycorpus" / "words")

    def test_an_id_the_index_lacks_fails_naming_the_line(self, nltk_app, nltk_index):
        """'stopword' is not in the index: nltk.txt:3 is named, with the close match."""
        build, cache, env, home = nltk_app
        (build / "nltk.txt").write_text("tinycorpus\n# the common words\nstopword\n")
        code, out = compile_(build, cache, env, home)
        assert code == 1, out
        assert error_lines(out)[-2:] == [
            f"nltk.txt:3: 'stopword' is not in NLTK's index at {nltk_index} "
            "(did you mean 'stopwords'?)",
            "Hint: fix nltk.txt: its ids must be those NLTK's index lists",
        ]
        assert not (build / ".heroku" / "python" / "nltk_data" / "corpora").exists()

    def test_a_malformed_line_fails_the_build(self, nltk_app):
        """A token that is no NLTK id fails before any download, naming the file and line."""
        build, cache, env, home = nltk_app
        (build / "nltk.txt").write_text("tinycorpus\ninvalid!\n")
        code, out = compile_(build, cache, env, home)
        assert code == 1, out
        assert error_lines(out)[-2:] == [
            "nltk.txt:2: 'invalid!' is not an NLTK package id",
            "Hint: list NLTK package ids in nltk.txt, such as 'punkt_tab' or 'stopwords'",
        ]

    def test_without_nltk_txt_nothing_is_downloaded_and_it_says_so(self, nltk_app):
        """nltk installed, no nltk.txt: the official buildpack's note, and no NLTK_DATA."""
        build, cache, env, home = nltk_app
        (build / "nltk.txt").unlink()
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        assert (
            "-----> Downloading NLTK corpora...\n"
            "       'nltk.txt' not found, not downloading any corpora\n"
        ) in out
        assert not (build / ".profile.d" / "wheelbarrow-nltk.sh").exists()


@pytest.mark.network
class TestNltkInCnbBuild:
    def test_the_corpora_layer_is_made_then_reused(self, tmp_path, nltk_index):
        """bin/build downloads into an nltk layer with NLTK_DATA; an unchanged rebuild reuses it."""
        app = tmp_path / "workspace"
        app.mkdir()
        (app / "requirements.txt").write_text(NLTK + "\n")
        (app / "nltk.txt").write_text("tinycorpus stopwords\n")
        platform = tmp_path / "platform"
        (platform / "env").mkdir(parents=True)
        (platform / "env" / "NLTK_DOWNLOAD_URL").write_text(nltk_index)
        layers = tmp_path / "layers"
        out = run_build(app, layers, platform)
        assert "-----> Downloading NLTK packages: tinycorpus stopwords\n" in out
        layer = layers / "nltk"
        assert (layer / "env" / "NLTK_DATA.default").read_text() == str(layer / "nltk_data")
        assert (layer / "nltk_data" / "corpora" / "stopwords" / "words").is_file()
        restore_like_the_lifecycle(layers)
        out = run_build(app, layers, platform)
        assert "-----> NLTK corpora layer: reused (metadata matches)\n" in out
        assert "Downloading NLTK packages" not in out


class TestReadNltkTxt:
    def test_ids_comments_and_several_a_line(self, tmp_path):
        """Blank lines and # comments are skipped; ids are split on blanks, kept once, in order."""
        path = tmp_path / "nltk.txt"
        path.write_text(
            "\ufeffpunkt_tab  stopwords # tokenizers\n\n# none here\nomw-1.4\npunkt_tab\n"
        )
        assert [(w.id, w.line) for w in read_nltk_txt(path)] == [
            ("punkt_tab", 1),
            ("stopwords", 1),
            ("omw-1.4", 4),
        ]

    def test_every_malformed_token_is_listed(self, tmp_path):
        """All bad tokens are reported at once, each with its line."""
        path = tmp_path / "nltk.txt"
        path.write_text("punkt\ninvalid!\nok ../etc\n")
        with pytest.raises(NltkTxtError) as caught:
            read_nltk_txt(path)
        assert caught.value.message.splitlines() == [
            "nltk.txt:2: 'invalid!' is not an NLTK package id",
            "nltk.txt:3: '../etc' is not an NLTK package id",
        ]

    def test_nltk_txt_without_nltk_is_ignored(self, tmp_path, local_index):
        """As the official buildpack: no nltk in the environment, no NLTK step at all."""
        d = tmp_path / "dists"
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        build = tmp_path / "build"
        build.mkdir()
        (build / "requirements.txt").write_text("alpha==1.0\n")
        (build / "nltk.txt").write_text("invalid!\n")
        env = tmp_path / "env"
        env.mkdir()
        (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
        code, out = compile_(build, tmp_path / "cache", env, tmp_path / "app")
        assert code == 0, out
        assert "NLTK" not in out and "nltk" not in out

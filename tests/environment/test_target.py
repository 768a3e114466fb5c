"""The directory an install goes into: what may be replaced there."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_wheel
from support.apps import build_cli, cli, make_app

from wheelbarrow._core.errors import InstallError
from wheelbarrow.environment.target import check_target


@pytest.fixture
def built(tmp_path: Path, local_index) -> tuple[Path, Path]:
    """An app (alpha 1.0) whose wheelhouse is built: (app, store)."""
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    index = local_index(d)
    app = make_app(tmp_path / "app", "alpha==1.0\n")
    store = tmp_path / "store"
    result = build_cli(app, store, index.url)
    assert result.code == 0, result.err
    return app, store


class TestCheckTarget:
    def test_a_symbolic_link_is_refused_naming_where_it_points(self, tmp_path):
        """A link given as the target is refused (installing would replace the link, which
        wheelbarrow did not make), and the error names the directory it points to."""
        (tmp_path / "real").mkdir()
        link = tmp_path / "link"
        link.symlink_to(tmp_path / "real")
        with pytest.raises(InstallError) as caught:
            check_target(link)
        assert str(link) in str(caught.value)
        assert str(tmp_path / "real") in (caught.value.hint or "")

    def test_a_missing_or_empty_directory_is_taken(self, tmp_path):
        """A path with nothing there, or an empty directory, may be installed into."""
        check_target(tmp_path / "missing")
        (tmp_path / "empty").mkdir()
        check_target(tmp_path / "empty")


class TestInstallIntoALink:
    @pytest.mark.parametrize("mode", ["shared", "hardlink", "copy"])
    def test_a_link_to_an_empty_directory_is_left_as_it_is(self, tmp_path, built, mode):
        """`install --into LINK`, LINK a symbolic link to an empty directory, fails in every
        layout and leaves the link in place, pointing where it did, and the directory empty."""
        app, store = built
        (tmp_path / "real").mkdir()
        link = tmp_path / "link"
        link.symlink_to(tmp_path / "real")
        result = cli("install", app, "--store", store, "--into", link, "--link-mode", mode)
        assert result.code != 0
        assert "symbolic link" in result.err
        assert "Traceback" not in result.err
        assert link.is_symlink()
        assert link.readlink() == tmp_path / "real"
        assert list((tmp_path / "real").iterdir()) == []

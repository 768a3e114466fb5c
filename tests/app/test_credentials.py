"""Credentials: which user and password go with a download URL, found as uv and pip find them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support import make_wheel, serve_local_index

from wheelbarrow.app.credentials import (
    Credentials,
    env_var_name,
    find_credentials,
    resolver_environ,
    split_userinfo,
    uv_config_indexes,
)

TOKEN = "tok-a1b2c3d4e5"  # noqa: S105  (a test credential)


def find(given=(), environ=None, app_root=None, tmp_path: Path | None = None) -> Credentials:
    """find_credentials with no netrc unless the environment names one."""
    env = dict(environ or {})
    env.setdefault("NETRC", str((tmp_path or Path("/nonexistent")) / "no-netrc"))
    return find_credentials(list(given), environ=env, app_root=app_root)


class TestSplitUserinfo:
    def test_user_and_password_are_decoded_and_removed(self):
        """Percent-encoded credentials come back decoded, the URL without them."""
        assert split_userinfo("https://a%40b:p%3Aw@h:8443/s/") == (
            "https://h:8443/s/",
            "a@b",
            "p:w",
        )

    def test_a_lone_user_name_has_no_password(self):
        """``https://token@host`` gives the token as user name and no password."""
        assert split_userinfo("https://tok@h/") == ("https://h/", "tok", None)

    def test_a_url_without_credentials_is_unchanged(self):
        """No ``@`` in the host part: nothing to split."""
        assert split_userinfo("https://h/x@y") == ("https://h/x@y", None, None)


class TestForUrl:
    def test_a_file_on_the_index_host_gets_the_index_credentials(self):
        """Files are matched to the index by scheme, host and port, not by path (as uv does)."""
        creds = find([("requirements.txt", f"http://alice:{TOKEN}@127.0.0.1:9000/simple/")])
        found = creds.for_url("http://127.0.0.1:9000/files/a-1.0-py3-none-any.whl")
        assert found is not None
        assert (found.username, found.password) == ("alice", TOKEN)
        assert found.source == "the index URL in requirements.txt"

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:9001/files/a.whl",  # another port
            "https://127.0.0.1:9000/files/a.whl",  # another scheme
            "http://localhost:9000/files/a.whl",  # another host
        ],
    )
    def test_another_realm_gets_nothing(self, url):
        """Credentials never go to another scheme, host or port."""
        creds = find([("the command line", f"http://alice:{TOKEN}@127.0.0.1:9000/simple/")])
        assert creds.for_url(url) is None

    def test_the_longest_matching_index_path_wins(self):
        """Two indexes on one host: a file under one's path gets that one's credentials."""
        creds = find(
            [
                ("the command line", "https://a:pa@h/team-a/simple/"),
                ("the command line", "https://b:pb@h/team-b/simple/"),
            ]
        )
        found = creds.for_url("https://h/team-b/simple/x/x-1.whl")
        assert found is not None and found.username == "b"

    def test_default_ports_are_the_same_realm(self):
        """``https://h`` and ``https://h:443`` are one realm."""
        creds = find([("UV_INDEX_URL", "https://u:secret1@h:443/simple/")])
        assert creds.for_url("https://h/f.whl") is not None

    def test_environment_index_urls_are_read(self):
        """Every index variable of uv and pip is a source, lists split on spaces."""
        env = {
            "UV_INDEX_URL": "https://u1:p1111@h1/simple/",
            "UV_EXTRA_INDEX_URL": "https://h0/ https://u2:p2222@h2/simple/",
            "PIP_INDEX_URL": "https://u3:p3333@h3/simple/",
            "PIP_EXTRA_INDEX_URL": "https://u4:p4444@h4/simple/",
            "UV_INDEX": "https://u5:p5555@h5/simple/",
            "UV_DEFAULT_INDEX": "https://u6:p6666@h6/simple/",
        }
        creds = find(environ=env)
        sources = {n: creds.for_url(f"https://h{n}/f.whl") for n in range(1, 7)}
        assert {n: c.username for n, c in sources.items() if c} == {n: f"u{n}" for n in range(1, 7)}
        assert sources[2] is not None and sources[2].source == "the index URL in UV_EXTRA_INDEX_URL"

    def test_a_named_index_takes_its_credentials_from_uv_variables(self):
        """``UV_INDEX=name=url`` takes ``UV_INDEX_<NAME>_USERNAME``/``_PASSWORD``, as in uv."""
        env = {
            "UV_INDEX": "my-corp.index=https://h/simple/",
            "UV_INDEX_MY_CORP_INDEX_USERNAME": "bob",
            "UV_INDEX_MY_CORP_INDEX_PASSWORD": TOKEN,
        }
        found = find(environ=env).for_url("https://h/packages/f.whl")
        assert found is not None
        assert (found.username, found.password) == ("bob", TOKEN)
        assert found.source == "UV_INDEX_MY_CORP_INDEX_USERNAME/UV_INDEX_MY_CORP_INDEX_PASSWORD"

    @pytest.mark.parametrize(
        ("filename", "text"),
        [
            ("pyproject.toml", '[[tool.uv.index]]\nname = "priv"\nurl = "https://h/simple/"\n'),
            ("uv.toml", '[[index]]\nname = "priv"\nurl = "https://h/simple/"\n'),
        ],
    )
    def test_the_apps_uv_indexes_are_named_indexes(self, tmp_path, filename, text):
        """An index named in the app's pyproject.toml or uv.toml takes the uv variables too."""
        (tmp_path / filename).write_text(text)
        env = {"UV_INDEX_PRIV_USERNAME": "bob", "UV_INDEX_PRIV_PASSWORD": TOKEN}
        found = find(environ=env, app_root=tmp_path, tmp_path=tmp_path).for_url("https://h/f.whl")
        assert found is not None and found.password == TOKEN

    def test_netrc_is_matched_by_host(self, tmp_path):
        """A netrc entry applies to its host on any port; ``default`` to every other host."""
        netrc = tmp_path / "netrc"
        netrc.write_text(
            f"machine h login carol password {TOKEN}\ndefault login any password anyp\n"
        )
        creds = find(environ={"NETRC": str(netrc)})
        found = creds.for_url("https://h:8443/f.whl")
        assert found is not None and (found.username, found.source) == ("carol", str(netrc))
        other = creds.for_url("https://elsewhere/f.whl")
        assert other is not None and other.username == "any"

    def test_netrc_defaults_to_the_home_directory(self, tmp_path):
        """Without ``$NETRC``, ``$HOME/.netrc`` is read."""
        (tmp_path / ".netrc").write_text(f"machine h login dave password {TOKEN}\n")
        creds = find_credentials([], environ={"HOME": str(tmp_path)})
        found = creds.for_url("http://h/f.whl")
        assert found is not None and found.username == "dave"

    def test_index_credentials_win_over_netrc(self, tmp_path):
        """Credentials given with the index come before the netrc entry of its host."""
        netrc = tmp_path / "netrc"
        netrc.write_text("machine h login carol password fromnetrc\n")
        creds = find([("x", f"https://alice:{TOKEN}@h/simple/")], environ={"NETRC": str(netrc)})
        found = creds.for_url("https://h/f.whl")
        assert found is not None and found.username == "alice"

    def test_an_unreadable_netrc_is_noted_not_fatal(self, tmp_path):
        """A malformed netrc gives no credentials, and the hint says it could not be read."""
        netrc = tmp_path / "netrc"
        netrc.write_text("machine h login x foo bar\n")
        creds = find(environ={"NETRC": str(netrc)})
        assert creds.for_url("https://h/f.whl") is None
        assert f"{netrc} (unreadable: line" in creds.refused_hint("https://h/f.whl", None)

    def test_secrets_are_the_passwords_and_lone_user_names(self, tmp_path):
        """What must never be printed: every password, and a user name given without one."""
        netrc = tmp_path / "netrc"
        netrc.write_text("machine n login nuser password npass1\n")
        creds = find(
            [("x", "https://u:upass1@h/"), ("y", "https://tokenuser@t/")],
            environ={"NETRC": str(netrc)},
        )
        assert creds.secrets == {"upass1", "tokenuser", "npass1"}
        unnamed = find(environ={"UV_INDEX_NOWHERE_PASSWORD": "envpass1"})
        assert unnamed.secrets == {"envpass1"}


class TestRefusedHint:
    def test_without_credentials_the_hint_lists_every_source_tried(self, tmp_path):
        """No credential for the host: the hint names each place looked at, and no value."""
        (tmp_path / "pyproject.toml").write_text(
            '[[tool.uv.index]]\nname = "corp"\nurl = "https://other/simple/"\n'
        )
        creds = find(
            [("requirements.txt", "http://127.0.0.1:9000/simple/")],
            environ={"UV_INDEX_URL": f"https://u:{TOKEN}@elsewhere/simple/"},
            app_root=tmp_path,
            tmp_path=tmp_path,
        )
        hint = creds.refused_hint("http://127.0.0.1:9000/f.whl", None)
        assert hint.startswith("no credentials for http://127.0.0.1:9000 were found; looked at: ")
        for part in (
            "the index URLs in requirements.txt, UV_INDEX_URL",
            "the indexes of pyproject.toml ([[tool.uv.index]])",
            "UV_INDEX_<NAME>_USERNAME/_PASSWORD for the named indexes corp",
            f"{tmp_path / 'no-netrc'} (there is none)",
            "UV_INDEX_CORP_USERNAME",
        ):
            assert part in hint
        assert TOKEN not in hint and "lock again" not in hint

    def test_refused_credentials_name_where_they_came_from(self):
        """Credentials the server refused: the hint names their source, not their value."""
        creds = find([("requirements.txt", f"http://alice:{TOKEN}@127.0.0.1:9000/simple/")])
        url = "http://127.0.0.1:9000/f.whl"
        hint = creds.refused_hint(url, creds.for_url(url))
        assert "refused the credentials from the index URL in requirements.txt" in hint
        assert TOKEN not in hint and "alice" not in hint


class TestEnvVarName:
    def test_non_alphanumerics_become_underscores(self):
        """``my-corp.index`` is ``MY_CORP_INDEX``, as uv spells it."""
        assert env_var_name("my-corp.index") == "MY_CORP_INDEX"


class TestResolverEnviron:
    def test_pip_variables_become_uv_ones(self):
        """PIP_INDEX_URL and PIP_EXTRA_INDEX_URL reach uv, unless uv's own are set."""
        env = resolver_environ(
            {"PIP_INDEX_URL": "https://a/simple/", "PIP_EXTRA_INDEX_URL": "https://b/simple/"}, None
        )
        assert env["UV_INDEX_URL"] == "https://a/simple/"
        assert env["UV_EXTRA_INDEX_URL"] == "https://b/simple/"
        kept = resolver_environ({"PIP_INDEX_URL": "https://a/", "UV_INDEX_URL": "https://c/"}, None)
        assert kept["UV_INDEX_URL"] == "https://c/"

    def test_the_apps_uv_indexes_are_passed_on(self, tmp_path):
        """Named indexes of pyproject.toml join UV_INDEX; a default one is UV_DEFAULT_INDEX;
        an explicit one is left out."""
        (tmp_path / "pyproject.toml").write_text(
            '[[tool.uv.index]]\nname = "priv"\nurl = "https://p/simple/"\n'
            '[[tool.uv.index]]\nname = "base"\nurl = "https://b/simple/"\ndefault = true\n'
            '[[tool.uv.index]]\nname = "pinned"\nurl = "https://x/simple/"\nexplicit = true\n'
        )
        env = resolver_environ({"UV_INDEX": "mine=https://m/simple/"}, tmp_path)
        assert env["UV_INDEX"] == "mine=https://m/simple/ priv=https://p/simple/"
        assert env["UV_DEFAULT_INDEX"] == "base=https://b/simple/"
        assert [i.name for i in uv_config_indexes(tmp_path)] == ["priv", "base", "pinned"]

    @pytest.mark.parametrize("source", ["pip", "pyproject"])
    def test_uv_locks_from_a_private_index_through_it(self, tmp_path, source):
        """Real uv, run in a scratch directory with this environment, reaches a private index
        given by PIP_INDEX_URL or by the app's [[tool.uv.index]] and UV_INDEX_<NAME>_*."""
        from wheelbarrow.cli.common import host

        dists = tmp_path / "dists"
        make_wheel(dists, "privdemo", "1.0")
        app = tmp_path / "app"
        app.mkdir()
        work = tmp_path / "work"
        work.mkdir()
        (work / "requirements.in").write_text("privdemo\n")
        with serve_local_index(
            tmp_path / "index", [*dists.iterdir()], auth=("alice", TOKEN)
        ) as index:
            base = {"PATH": "/usr/bin:/bin", "NETRC": str(tmp_path / "none"), "UV_NO_CONFIG": "1"}
            base["UV_CACHE_DIR"] = str(tmp_path / "cache")
            if source == "pip":
                url = index.url.replace("http://", f"http://alice:{TOKEN}@")
                environ = {**base, "PIP_INDEX_URL": url}
            else:
                (app / "pyproject.toml").write_text(
                    f'[[tool.uv.index]]\nname = "priv"\nurl = "{index.url}"\ndefault = true\n'
                )
                environ = {
                    **base,
                    "UV_INDEX_PRIV_USERNAME": "alice",
                    "UV_INDEX_PRIV_PASSWORD": TOKEN,
                }
            done = subprocess.run(
                [
                    host().uv,
                    "pip",
                    "compile",
                    "requirements.in",
                    "--format",
                    "pylock.toml",
                    "-o",
                    "pylock.toml",
                    "--no-header",
                ],
                cwd=work,
                env=resolver_environ(environ, app),
                capture_output=True,
                text=True,
                check=False,
            )
        assert done.returncode == 0, done.stderr
        lock = (work / "pylock.toml").read_text()
        assert 'name = "privdemo"' in lock and TOKEN not in lock

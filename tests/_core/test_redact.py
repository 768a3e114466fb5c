"""Redaction: no credential in a URL, and no remembered secret, survives into output."""

from __future__ import annotations

import json

import pytest

from wheelbarrow._core.redact import Secrets, redact_data, redact_urls, strip_credentials

TOKEN = "tok-5f1e2d3c"  # noqa: S105  (a test credential)


class TestRedactUrls:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("http://alice:hunter22@h:8080/simple/", "http://alice:****@h:8080/simple/"),
            ("https://TOKEN123@h/simple/", "https://****@h/simple/"),
            ("git+https://u:p@github.com/o/r.git@v1", "git+https://u:****@github.com/o/r.git@v1"),
            (
                "see http://h/simple/ and mail me@example.org",
                "see http://h/simple/ and mail me@example.org",
            ),
            ('url = "http://a:b@h"', 'url = "http://a:****@h"'),
            ("https://u:p@ss@h/x", "https://u:****@h/x"),  # an unescaped @ in the password
            ("GET http://h/x?to=a@b answered", "GET http://h/x?to=a@b answered"),
        ],
    )
    def test_credentials_in_urls_are_masked(self, text, expected):
        """The password (or a lone user name, often a token) is masked; the rest stays."""
        assert redact_urls(text) == expected

    def test_every_url_of_a_text_is_masked(self):
        """Several URLs on several lines are all masked."""
        text = f"a http://u:{TOKEN}@h1/ b\nc https://{TOKEN}@h2/x d"
        assert TOKEN not in redact_urls(text)
        assert redact_urls(text).count("****") == 2


class TestStripCredentials:
    def test_the_userinfo_goes_and_the_url_stays(self):
        """A URL kept in a file loses its credentials entirely."""
        text = f'wheels = [{{ url = "https://u:{TOKEN}@h/a.whl" }}]\nother = "https://h/b"'
        assert (
            strip_credentials(text)
            == 'wheels = [{ url = "https://h/a.whl" }]\nother = "https://h/b"'
        )


class TestSecrets:
    def test_a_remembered_secret_is_masked_anywhere(self):
        """A netrc or environment password is masked wherever it appears, also percent-encoded."""
        secrets = Secrets()
        secrets.add(["p@ss/word"])
        assert secrets.redact("password p@ss/word, in a URL p%40ss%2Fword") == (
            "password ****, in a URL ****"
        )

    def test_short_values_are_not_secrets(self):
        """Values under four characters are not masked (they would garble every message)."""
        secrets = Secrets()
        secrets.add(["ab", ""])
        assert secrets.redact("a tab and a slab") == "a tab and a slab"

    def test_redact_data_masks_every_string_of_a_json_value(self):
        """Nested values of a JSON report are redacted, keys included."""
        from wheelbarrow._core.redact import remember

        remember([TOKEN])
        data = {"error": f"GET http://u:{TOKEN}@h/", "list": [TOKEN, 3], TOKEN: None}
        assert TOKEN not in json.dumps(redact_data(data))
        assert redact_data({"n": 3, "ok": True}) == {"n": 3, "ok": True}


class TestOutputBoundaries:
    def test_cli_errors_mask_credentials_in_text_and_json(self, capsys):
        """An error quoting a URL with credentials prints it masked, on stderr and in --json."""
        from wheelbarrow._core.errors import FetchError
        from wheelbarrow.cli import render

        exc = FetchError(f"GET http://u:{TOKEN}@h/x answered 404", hint=f"check https://{TOKEN}@h/")
        render.error(exc, json_mode=True)
        out, err = capsys.readouterr()
        assert TOKEN not in out + err
        assert "http://u:****@h/x" in err and json.loads(out)["hint"] == "check https://****@h/"

    def test_json_reports_and_result_lines_are_masked(self, capsys):
        """``--json`` reports and result lines mask credentials too."""
        from wheelbarrow.cli import render

        render.emit_json({"version": 1, "index": f"https://u:{TOKEN}@h/simple/"})
        render.out(f"served from https://u:{TOKEN}@h/")
        out, _ = capsys.readouterr()
        assert TOKEN not in out and "https://u:****@h/simple/" in out

    def test_reporter_messages_are_masked(self):
        """The plain reporter and the buildpack's log mask credentials in every message."""
        import io

        from wheelbarrow.cli.render import PlainReporter
        from wheelbarrow.ship.heroku.output import HerokuReporter

        for reporter_type in (PlainReporter, HerokuReporter):
            stream = io.StringIO()
            reporter = reporter_type(stream)
            reporter.message("info", f"locking from https://u:{TOKEN}@h/simple/")
            reporter.message("warning", f"https://{TOKEN}@h/ is slow")
            assert TOKEN not in stream.getvalue()
            assert "https://u:****@h/simple/" in stream.getvalue()
        stream = io.StringIO()
        HerokuReporter(stream).error(f"GET https://u:{TOKEN}@h/", hint=f"see https://u:{TOKEN}@h/")
        assert TOKEN not in stream.getvalue()

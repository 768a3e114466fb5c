"""Finding the credentials for a download URL the way uv and pip do: index URLs, netrc, env."""

from __future__ import annotations

import netrc
import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wheelbarrow.app.directory import App
    from wheelbarrow.app.requirements import IndexOptions

# Variables uv and pip read index URLs from; space-separated lists for the extras.
INDEX_ENV_VARS = (
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_INDEX",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
)
_NAMED = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)=(?P<url>[A-Za-z][A-Za-z0-9+.-]*://.*)$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """A user name and password, and where they were found (named in hints, never the values)."""

    username: str
    password: str
    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An index URL as given (credentials removed), its uv name if it has one, its credential."""

    url: str
    name: str | None
    credential: Credential | None
    source: str


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user:password@, user, password)``, both decoded; None where absent.

    >>> split_userinfo("https://alice:p%40ss@example.org:8443/simple/")
    ('https://example.org:8443/simple/', 'alice', 'p@ss')
    """
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return (
        clean,
        urllib.parse.unquote(user),
        urllib.parse.unquote(password) if sep else None,
    )


def realm(url: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an http(s) URL, the unit credentials apply to; else None."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _realm_text(url: str) -> str:
    found = realm(url)
    if found is None:
        return url
    scheme, host, port = found
    return f"{scheme}://{host}" + ("" if port == _DEFAULT_PORTS[scheme] else f":{port}")


def env_var_name(index_name: str) -> str:
    """The ``NAME`` of ``UV_INDEX_<NAME>_USERNAME``: upper case, other characters as ``_``."""
    return re.sub(r"[^A-Z0-9]", "_", index_name.upper())


class Credentials:
    """Every credential known for this run, and what was looked at to find them.

    :meth:`for_url` answers for one download URL: the credential of the index
    on the same scheme, host and port (the longest matching path first), as
    uv and pip match a file to its index; then the netrc entry of the host.
    """

    def __init__(
        self,
        indexes: Sequence[Index],
        *,
        netrc_path: Path | None,
        netrc_entries: Mapping[str, tuple[str, str]],
        looked_at: Sequence[str],
        other_secrets: Iterable[str] = (),
    ) -> None:
        self.indexes = tuple(indexes)
        self.netrc_path = netrc_path
        self._netrc = dict(netrc_entries)
        self.looked_at = tuple(looked_at)
        self._other_secrets = frozenset(other_secrets)

    def for_url(self, url: str) -> Credential | None:
        """The credential to send with a GET of ``url`` (which holds none itself), or None."""
        where = realm(url)
        if where is None:
            return None
        path = urllib.parse.urlsplit(url).path
        best: tuple[int, Credential] | None = None
        for index in self.indexes:
            if index.credential is None or realm(index.url) != where:
                continue
            prefix = urllib.parse.urlsplit(index.url).path.rstrip("/")
            score = len(prefix) if path.startswith(prefix + "/") or path == prefix else -1
            if best is None or score > best[0]:
                best = (score, index.credential)
        if best is not None:
            return best[1]
        host = where[1]
        entry = self._netrc.get(host) or self._netrc.get("default")
        if entry is not None and self.netrc_path is not None:
            return Credential(username=entry[0], password=entry[1], source=str(self.netrc_path))
        return None

    @property
    def secrets(self) -> frozenset[str]:
        """The values that must never be printed: passwords, lone user names (tokens), and
        every ``UV_INDEX_<NAME>_PASSWORD``, whether or not an index of that name is known."""
        found = set(self._other_secrets)
        for credential in self._all():
            found.add(credential.password if credential.password else credential.username)
        return frozenset(v for v in found if v)

    def _all(self) -> Iterable[Credential]:
        for index in self.indexes:
            if index.credential is not None:
                yield index.credential
        for user, password in self._netrc.values():
            yield Credential(username=user, password=password, source="netrc")

    def refused_hint(self, url: str, sent: Credential | None) -> str:
        """What to do about a 401 or 403 for ``url``: true for this run, and naming no secret."""
        where = _realm_text(url)
        if sent is not None:
            return (
                f"{where} refused the credentials from {sent.source}: check that they are "
                "right and still valid, and that the account may read this index"
            )
        named = sorted({i.name for i in self.indexes if i.name})
        host = realm(url)
        netrc_file = str(self.netrc_path) if self.netrc_path else "~/.netrc"
        return (
            f"no credentials for {where} were found; looked at: {'; '.join(self.looked_at)}. "
            f"Give them in the index URL (https://USER:PASSWORD@{host[1] if host else 'HOST'}/...)"
            f", in {netrc_file} (machine HOST login USER password PASSWORD)"
            + (
                f", or in UV_INDEX_{env_var_name(named[0])}_USERNAME and _PASSWORD"
                if named
                else ", or name the index (UV_INDEX=NAME=URL) and set "
                "UV_INDEX_<NAME>_USERNAME and _PASSWORD"
            )
        )


def find_credentials(
    given: Sequence[tuple[str, str]],
    *,
    environ: Mapping[str, str],
    app_root: Path | None = None,
    home: Path | None = None,
) -> Credentials:
    """Gather the credentials of this run.

    ``given`` holds ``(where, url)`` pairs for the URLs the user wrote
    (requirements files, the command line, config vars). The environment's
    index variables, uv's named indexes (``UV_INDEX=name=url``,
    ``[[tool.uv.index]]`` in the app's pyproject.toml, ``[[index]]`` in its
    uv.toml) with ``UV_INDEX_<NAME>_USERNAME``/``_PASSWORD``, and the netrc
    file (``$NETRC``, else ``~/.netrc``) are read here.
    """
    raw, looked_at = _index_urls(given, environ=environ, app_root=app_root)
    indexes = [_index(where, url, index_name, environ) for where, url, index_name in raw]
    names = sorted({i.name for i in indexes if i.name})
    looked_at.append(
        "UV_INDEX_<NAME>_USERNAME/_PASSWORD for "
        + (("the named indexes " + ", ".join(names)) if names else "named indexes (none here)")
    )

    netrc_path, entries, state = _read_netrc(environ, home)
    looked_at.append(f"{netrc_path}{state}")
    return Credentials(
        indexes,
        netrc_path=netrc_path,
        netrc_entries=entries,
        looked_at=tuple(looked_at),
        other_secrets=(
            v for k, v in environ.items() if re.fullmatch(r"UV_INDEX_\w+_PASSWORD", k) and v
        ),
    )


def _index_urls(
    given: Sequence[tuple[str, str]], *, environ: Mapping[str, str], app_root: Path | None
) -> tuple[list[tuple[str, str, str | None]], list[str]]:
    """Every index URL of this run as ``(where, url, index name)``, and where they were found."""
    raw: list[tuple[str, str, str | None]] = [(where, url, None) for where, url in given]
    looked_at = []
    given_by = list(dict.fromkeys(where for where, _ in given))
    for variable in INDEX_ENV_VARS:
        value = environ.get(variable, "")
        if not value.strip():
            continue
        given_by.append(variable)
        for item in value.split():
            match = _NAMED.match(item)
            if match:
                raw.append((variable, match["url"], match["name"]))
            else:
                raw.append((variable, item, None))
    if given_by:
        looked_at.append("the index URLs in " + ", ".join(given_by))
    if app_root is not None:
        configured = uv_config_indexes(app_root)
        raw += [(index.where, index.url, index.name) for index in configured]
        looked_at += dict.fromkeys(f"the indexes of {index.where}" for index in configured)
    return raw, looked_at


def _index(where: str, url: str, index_name: str | None, environ: Mapping[str, str]) -> Index:
    """The index at ``url`` with the credential its URL or its UV_INDEX_<NAME>_* variables give."""
    clean, user, password = split_userinfo(url)
    credential = None
    if user is not None:
        credential = Credential(
            username=user, password=password or "", source=f"the index URL in {where}"
        )
    if index_name is not None:
        var = f"UV_INDEX_{env_var_name(index_name)}"
        env_user, env_password = environ.get(f"{var}_USERNAME"), environ.get(f"{var}_PASSWORD")
        if env_user is not None or env_password is not None:
            # As in uv, these win over what the URL says.
            credential = Credential(
                username=env_user if env_user is not None else (user or ""),
                password=env_password if env_password is not None else (password or ""),
                source=f"{var}_USERNAME/{var}_PASSWORD",
            )
    return Index(url=clean, name=index_name, credential=credential, source=where)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfiguredIndex:
    """An index of the app's uv configuration (``[[tool.uv.index]]`` or uv.toml's ``[[index]]``)."""

    where: str
    url: str
    name: str | None
    default: bool
    explicit: bool


def uv_config_indexes(app_root: Path) -> list[ConfiguredIndex]:
    """The indexes of ``app_root/pyproject.toml`` (``[[tool.uv.index]]``) and ``uv.toml``."""
    found: list[ConfiguredIndex] = []
    for filename, keys in (("pyproject.toml", ("tool", "uv", "index")), ("uv.toml", ("index",))):
        path = app_root / filename
        try:
            data: object = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            # Unreadable config is reported by the code that reads it for its meaning.
            continue
        for key in keys:
            data = data.get(key) if isinstance(data, dict) else None
        if not isinstance(data, list):
            continue
        table = "[[tool.uv.index]]" if len(keys) > 1 else "[[index]]"
        for entry in data:
            if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                name = entry.get("name")
                found.append(
                    ConfiguredIndex(
                        where=f"{filename} ({table})",
                        url=entry["url"],
                        name=name if isinstance(name, str) else None,
                        default=entry.get("default") is True,
                        explicit=entry.get("explicit") is True,
                    )
                )
    return found


def resolver_environ(environ: Mapping[str, str], app_root: Path | None) -> dict[str, str]:
    """The environment to run uv in, so that it sees the indexes this module does.

    uv reads neither pip's variables nor, running in a scratch directory, the
    app's own uv configuration: ``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL``
    become ``UV_INDEX_URL``/``UV_EXTRA_INDEX_URL`` (unless those are set), and
    the app's named indexes are added to ``UV_INDEX`` (a ``default = true`` one
    becomes ``UV_DEFAULT_INDEX``). Credentials stay where they were given.
    """
    env = dict(environ)
    if not env.get("UV_INDEX_URL") and not env.get("UV_DEFAULT_INDEX") and env.get("PIP_INDEX_URL"):
        env["UV_INDEX_URL"] = env["PIP_INDEX_URL"]
    if not env.get("UV_EXTRA_INDEX_URL") and env.get("PIP_EXTRA_INDEX_URL"):
        env["UV_EXTRA_INDEX_URL"] = env["PIP_EXTRA_INDEX_URL"]
    if app_root is None:
        return env
    extra = []
    for index in uv_config_indexes(app_root):
        if index.explicit:
            continue  # only for packages pinned to it in tool.uv.sources, which uv pip ignores
        item = f"{index.name}={index.url}" if index.name else index.url
        if index.default and not env.get("UV_DEFAULT_INDEX") and not env.get("UV_INDEX_URL"):
            env["UV_DEFAULT_INDEX"] = item
        elif not index.default:
            extra.append(item)
    if extra:
        env["UV_INDEX"] = " ".join([*env.get("UV_INDEX", "").split(), *extra])
    return env


def _read_netrc(
    environ: Mapping[str, str], home: Path | None
) -> tuple[Path, dict[str, tuple[str, str]], str]:
    """The netrc file's path, its entries by host (``default`` too), and a note for hints."""
    if environ.get("NETRC"):
        path = Path(environ["NETRC"]).expanduser()
    else:
        base = home or (Path(environ["HOME"]) if environ.get("HOME") else Path.home())
        path = base / ".netrc"
    if not path.is_file():
        return path, {}, " (there is none)"
    try:
        # A path given explicitly skips the stdlib's ownership check, as uv and curl do.
        parsed = netrc.netrc(str(path))
    except netrc.NetrcParseError as exc:
        return path, {}, f" (unreadable: line {exc.lineno}: {exc.msg})"
    except OSError as exc:
        return path, {}, f" (unreadable: {exc.strerror})"
    entries = {
        host.lower(): (login or "", password or "")
        for host, (login, _account, password) in parsed.hosts.items()
        if login or password
    }
    return path, entries, ""


def given_urls(index: IndexOptions, where: str) -> list[tuple[str, str]]:
    """The URLs of index options, labelled with where they were given."""
    urls = [index.index_url] if index.index_url else []
    urls += [*index.extra_index_urls, *index.find_links]
    return [(where, url) for url in urls]


def credentials_for(
    app: App,
    given: IndexOptions,
    *,
    given_by: str,
    environ: Mapping[str, str],
    home: Path | None = None,
) -> Credentials:
    """The credentials of a build of ``app``: its requirements' index options and direct
    URLs, the options ``given`` (labelled ``given_by``), the environment and netrc."""
    urls: list[tuple[str, str]] = []
    if app.requirements is not None:
        source = app.requirements_source.name if app.requirements_source else "the requirements"
        urls += given_urls(app.requirements.index, source)
        for line in (*app.requirements.requirements, *app.requirements.constraints):
            url = line.url or (line.requirement.url if line.requirement is not None else None)
            if url and realm(url) is not None:
                urls.append((str(line.origin), url))
    from wheelbarrow.app.managers import manager_index_urls

    # A Pipfile's [[source]] or a Poetry project's sources, with what the manager reads.
    urls += manager_index_urls(app.root, app.manager, environ)
    urls += given_urls(given, given_by)
    return find_credentials(urls, environ=environ, app_root=app.root, home=home)

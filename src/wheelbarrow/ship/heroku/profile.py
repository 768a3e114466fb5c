"""The ``.profile.d/`` script that sets up the app's environment when a dyno starts."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from wheelbarrow._core.files import atomic_write_text

SCRIPT_NAME = "wheelbarrow.sh"

MEMORY_PER_WORKER = 256 * 1024 * 1024
MAX_WORKERS = 32
# A cgroup limit above this means "no limit": cgroup v1 reports about 8 EiB then.
MAX_SANE_MEMORY = 1024**4

CGROUP_LIMITS = ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes")

_SAFE_REL = re.compile(r"[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")


def web_concurrency(memory_bytes: int | None, cores: int) -> int:
    """The default number of web server processes for a machine.

    ``min(cores * 2 + 1, memory in MiB // 256)``, at least 1 and at most 32:
    gunicorn's advice of two workers per core plus one, as long as each gets
    256 MiB (the rule of Heroku's Python buildpack: 2 on a 512 MB dyno, 5 on 2
    cores and 2.5 GB). Unknown memory leaves only the core rule.
    """
    workers = max(cores, 1) * 2 + 1
    if memory_bytes is not None:
        workers = min(workers, memory_bytes // MEMORY_PER_WORKER)
    return max(1, min(workers, MAX_WORKERS))


def machine_memory_bytes(root: Path = Path("/")) -> int | None:
    """The memory the script finds under ``root``: the cgroup limit, else MemTotal.

    The same reading as the shell script's, for checking it and for saying at
    build time what a dyno will get. A limit of ``max`` or above 1 TiB is no
    limit. ``None`` when nothing is readable.
    """
    for rel in CGROUP_LIMITS:
        try:
            value = (root / rel).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value.isdigit() and len(value) <= 13 and int(value) <= MAX_SANE_MEMORY:
            return int(value)
    try:
        meminfo = (root / "proc/meminfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in meminfo.splitlines():
        fields = line.split()
        if fields[:1] == ["MemTotal:"]:
            return int(fields[1]) * 1024 if len(fields) > 1 and fields[1].isdigit() else None
    return None


def _checked_rel(name: str, value: str) -> str:
    """A path relative to the app root, made only of characters that need no shell quoting."""
    path = PurePosixPath(value)
    if (
        not _SAFE_REL.fullmatch(value)
        or path.is_absolute()
        or any(part in (".", "..") for part in path.parts)
    ):
        raise ValueError(
            f"{name} must be a plain path inside the app, like '.heroku/venv': {value!r}"
        )
    return path.as_posix()


# Written as a POSIX sh script (no bashisms: dash must run it too), sourced by
# the dyno's shell, so it must never exit, never `set -e`, and must not leave
# its own variables behind. Every path is under $HOME, the app directory at
# run time, never the directory the build ran in.
_HEADER = """\
# Written by wheelbarrow at build time. Sourced at dyno start, with HOME set to
# the app directory: every path is relative to it, wherever the slug was built.
"""

_ENVIRONMENT = """\
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-true}"
export LANG="${LANG:-C.UTF-8}"
unset PYTHONHOME
"""

_WEB_CONCURRENCY = """\
# WEB_CONCURRENCY, read by gunicorn and uvicorn, unless the app sets it:
# min(cores * 2 + 1, memory in MiB / 256), at least 1, at most 32. Two workers
# per core plus one, while each has 256 MiB (Heroku's Python buildpack uses the
# same rule). Memory is the cgroup limit (v2, then v1; "max" or more than 1 TiB
# means no limit), else MemTotal.
if [ -z "${WEB_CONCURRENCY:-}" ]; then
  _wb_mem=
  for _wb_file in /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory/memory.limit_in_bytes; do
    if [ -z "$_wb_mem" ] && [ -r "$_wb_file" ]; then
      _wb_value=
      read -r _wb_value < "$_wb_file" || true
      case "$_wb_value" in
        '' | *[!0-9]*) ;;
        *)
          # More than 13 digits would overflow the shell's arithmetic.
          if [ "${#_wb_value}" -le 13 ] && [ "$_wb_value" -le 1099511627776 ]; then
            _wb_mem=$_wb_value
          fi
          ;;
      esac
    fi
  done
  if [ -z "$_wb_mem" ] && [ -r /proc/meminfo ]; then
    while read -r _wb_key _wb_value _wb_unit; do
      if [ "$_wb_key" = "MemTotal:" ]; then
        case "$_wb_value" in
          '' | *[!0-9]*) ;;
          *) _wb_mem=$((_wb_value * 1024)) ;;
        esac
        break
      fi
    done < /proc/meminfo
  fi
  # nproc honours OMP_NUM_THREADS, which numeric apps often set to 1: ignore it.
  _wb_cores=$(OMP_NUM_THREADS= OMP_THREAD_LIMIT= nproc 2>/dev/null) || _wb_cores=
  case "$_wb_cores" in
    '' | *[!0-9]* | 0) _wb_cores=1 ;;
  esac
  _wb_workers=$((_wb_cores * 2 + 1))
  if [ -n "$_wb_mem" ] && [ $((_wb_mem / 268435456)) -lt "$_wb_workers" ]; then
    _wb_workers=$((_wb_mem / 268435456))
  fi
  if [ "$_wb_workers" -lt 1 ]; then
    _wb_workers=1
  elif [ "$_wb_workers" -gt 32 ]; then
    _wb_workers=32
  fi
  export WEB_CONCURRENCY="$_wb_workers"
  unset _wb_mem _wb_file _wb_value _wb_key _wb_unit _wb_cores _wb_workers
fi
"""


def profile_script(*, venv_rel: str | None, runtime_rel: str | None) -> str:
    """The text of the script :func:`write_profile` writes."""
    bins = [
        f"$HOME/{_checked_rel(name, rel)}/bin"
        for name, rel in (("venv_rel", venv_rel), ("runtime_rel", runtime_rel))
        if rel is not None
    ]
    lines = [_HEADER]
    if bins:
        # The environment's bin first, so its python and scripts win over the runtime's.
        lines.append(f'export PATH="{":".join(bins)}${{PATH:+:$PATH}}"\n')
    lines.append(_ENVIRONMENT)
    lines.append(_WEB_CONCURRENCY)
    return "\n".join(lines)


def write_profile(build_dir: Path, *, venv_rel: str | None, runtime_rel: str | None) -> Path:
    """Write ``BUILD_DIR/.profile.d/wheelbarrow.sh`` atomically; return its path.

    ``venv_rel`` and ``runtime_rel`` are the environment's and the Python
    runtime's directories relative to the app root (``.heroku/venv``); their
    ``bin`` directories go first on PATH, the environment's before the
    runtime's. The script also sets ``PYTHONUNBUFFERED`` and ``LANG`` unless
    set, unsets ``PYTHONHOME`` and sets ``WEB_CONCURRENCY`` (see
    :func:`web_concurrency`) unless set. ``ValueError`` for a path that is
    absolute, leaves the app or needs shell quoting.
    """
    text = profile_script(venv_rel=venv_rel, runtime_rel=runtime_rel)
    path = build_dir / ".profile.d" / SCRIPT_NAME
    atomic_write_text(path, text)
    return path

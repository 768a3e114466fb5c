"""The buildpack's entry point: ``python -m wheelbarrow.ship.heroku compile|release|cnb-*``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

USAGE = """usage:
  python -m wheelbarrow.ship.heroku compile BUILD_DIR CACHE_DIR ENV_DIR
  python -m wheelbarrow.ship.heroku release BUILD_DIR
  python -m wheelbarrow.ship.heroku cnb-build   (Cloud Native Buildpack, from CNB_* variables)"""


def main(argv: list[str]) -> int:
    """Dispatch to the buildpack step; exit codes follow each contract."""
    if not argv:
        sys.stderr.write(USAGE + "\n")
        return 2
    command, args = argv[0], argv[1:]
    if command == "compile" and len(args) == 3:
        from uv import find_uv_bin

        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.ship.heroku.compile import run_compile
        from wheelbarrow.ship.heroku.output import HerokuReporter

        out = HerokuReporter(sys.stdout)
        return run_compile(
            Path(args[0]),
            Path(args[1]),
            Path(args[2]),
            out=out,
            environ=dict(os.environ),
            runner=run_subprocess,
            which=shutil.which,
            uv=str(find_uv_bin()),
        )
    if command == "release" and len(args) == 1:
        from wheelbarrow.ship.heroku.release import release_yaml

        sys.stdout.write(release_yaml(Path(args[0])))
        return 0
    if command == "cnb-build" and not args:
        from uv import find_uv_bin

        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.ship.heroku.cnb_build import main as cnb_build

        return cnb_build(
            dict(os.environ), runner=run_subprocess, which=shutil.which, uv=str(find_uv_bin())
        )
    sys.stderr.write(USAGE + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``wheelbarrow serve``: the app's wheelhouse as a package index over HTTP."""

from __future__ import annotations

import argparse

from wheelbarrow.cli import common, render
from wheelbarrow.errors import StoreError
from wheelbarrow.plan import make_plan
from wheelbarrow.runner import run_subprocess
from wheelbarrow.serve import make_server
from wheelbarrow.wheelhouse import manifest_of


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; pip and uv install from the printed URL."""
    app = common.app(args)
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = make_plan(
        app,
        common.options(args),
        common.host(),
        runner=run_subprocess,
        reporter=reporter,
        may_lock=False,
    )
    root = store.wheelhouse(plan.key)
    if manifest_of(store, plan.key) is None:
        raise StoreError(
            f"no wheelhouse for {app.lock_path}", hint=f"run `wheelbarrow build {app.root}` first"
        )
    server = make_server(root, host=args.host, port=args.port)
    render.out(f"Serving {root} at {server.url}simple/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    finally:
        server.shutdown()
    return 0

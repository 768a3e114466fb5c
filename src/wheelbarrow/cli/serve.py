"""``wheelbarrow serve``: the app's wheelhouse as a package index over HTTP."""

from __future__ import annotations

import argparse
import contextlib

from wheelbarrow.cli import common, render
from wheelbarrow.share.serve import make_server
from wheelbarrow.wheelhouse.assemble import require_wheelhouse


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; pip and uv install from the printed URL."""
    store = common.store(args)
    reporter = render.make_reporter(quiet=args.quiet, json_mode=args.json)
    plan = common.plan(args, reporter, may_lock=False)
    with contextlib.ExitStack() as held:
        # Leased while served: `store gc` must not remove it under the clients' feet.
        key, _ = store.hold(held, "wheelhouse", lambda: require_wheelhouse(store, plan))
        root = store.wheelhouse(key)
        server = make_server(root, host=args.host, port=args.port)
        render.out(f"Serving {root} at {server.url}simple/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        finally:
            server.shutdown()
    return 0

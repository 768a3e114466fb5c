"""Run the CLI with ``python -m wheelbarrow``."""

from wheelbarrow.cli import main

raise SystemExit(main())

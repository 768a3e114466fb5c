"""wheelbarrow: lock, build and ship wheelhouses for Python apps."""

__version__ = "0.1.0"

"""Hypothesis settings and text pieces shared by the fuzz tests (tests/test_fuzz_*.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# WHEELBARROW_FUZZ_SCALE=10 runs ten times the examples (for a long local hunt);
# CI runs the default, derandomized so that every run tries the same cases.
SCALE = float(os.environ.get("WHEELBARROW_FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    """Deterministic settings for ``examples`` cases: no database, no deadline, fixed seeds."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # each case rewrites the files it uses
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# Characters that matter to the parsers (separators, quotes, escapes, NUL,
# non-ASCII) are drawn far more often than uniform text would draw them.
NASTY = "=<>!~;@#/\\.:-_[](){}$,'\"*? \t\x00\x0c\r\u00e9\u2028\ufeff%+^|"
nasty_text = st.text(
    alphabet=st.one_of(st.sampled_from(NASTY), st.characters(codec="utf-8")),
    max_size=40,
)
nasty_bytes = st.one_of(
    st.binary(max_size=200),
    nasty_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    # Invalid UTF-8 in the middle of otherwise good text.
    st.tuples(nasty_text, st.binary(min_size=1, max_size=4), nasty_text).map(
        lambda t: t[0].encode() + b"\xff" + t[1] + t[2].encode()
    ),
)


def names_file(message: str, path: Path, *, line: bool = False) -> bool:
    """Whether ``message`` starts with ``path`` (and ``:LINE`` if ``line``), as errors must."""
    pattern = re.escape(str(path)) + (r":\d+: " if line else r"(:\d+)?:? ")
    return re.match(pattern, message) is not None

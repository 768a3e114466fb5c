"""The NamedTuple made without typing behaves as typing's does."""

from __future__ import annotations

import pickle
import subprocess
import sys
import typing

import pytest

from wheelbarrow._core.tuples import NamedTuple


class Point(NamedTuple):
    """A point, with a default and a method."""

    x: int
    y: int
    label: str = "origin"

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)

    @property
    def total(self) -> int:
        return self.x + self.y


class TypingPoint(typing.NamedTuple):
    x: int
    y: int
    label: str = "origin"


def test_it_is_a_tuple_with_typing_s_fields_defaults_and_methods() -> None:
    point = Point(1, 2)
    assert point == (1, 2, "origin") == tuple(TypingPoint(1, 2))
    assert Point._fields == TypingPoint._fields
    assert Point._field_defaults == TypingPoint._field_defaults == {"label": "origin"}
    assert point.moved(3) == Point(4, 2)
    assert point.total == 3
    assert point._asdict() == {"x": 1, "y": 2, "label": "origin"}
    assert repr(point) == "Point(x=1, y=2, label='origin')"
    assert Point.__doc__ == "A point, with a default and a method."
    assert Point.__module__ == __name__
    assert not hasattr(point, "__dict__")  # slots, as typing's


def test_it_pickles_and_is_immutable() -> None:
    made = pickle.dumps(Point(1, 2, "p"))
    assert pickle.loads(made) == Point(1, 2, "p")  # noqa: S301 - its own bytes, made just now
    with pytest.raises(AttributeError):
        Point(1, 2).x = 5  # type: ignore[misc]


def test_a_field_without_a_default_after_one_with_one_is_refused() -> None:
    namespace = {"__module__": __name__, "__annotations__": {"a": "int", "b": "int"}, "a": 1}
    with pytest.raises(TypeError, match="without a default follows"):
        type(NamedTuple)("Bad", (NamedTuple,), namespace)


def test_importing_it_imports_no_typing() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            "import sys\nfrom wheelbarrow._core.tuples import NamedTuple\n"
            "class A(NamedTuple):\n    a: int\n"
            "print(A(1), 'typing' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == "A(a=1) False\n"

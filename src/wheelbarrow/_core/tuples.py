"""``typing.NamedTuple``'s class syntax without importing :mod:`typing`.

A warm install runs in about 50 ms beyond the interpreter's start, and importing
:mod:`typing` took 3 of them, for nothing it runs: its modules use typing only for
annotations (not evaluated, under ``from __future__ import annotations``) and for
``NamedTuple``. This ``NamedTuple`` makes the class as typing's does, with
:func:`collections.namedtuple` (the fields in annotation order, their defaults, the class's
docstring, methods and properties), and is typing's own to mypy.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    import collections

    # What the namespace of a class statement holds besides what it defines.
    _MADE = frozenset({"__module__", "__qualname__", "__annotations__", "__doc__"})

    class _Maker(type):
        """The metaclass of ``NamedTuple``: a class statement on it makes a named tuple."""

        def __new__(cls, name, bases, namespace):
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field not in namespace for field in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            made = collections.namedtuple(
                name, fields, defaults=defaults, module=namespace["__module__"]
            )
            made.__qualname__ = namespace.get("__qualname__", name)
            made.__annotations__ = dict(namespace.get("__annotations__", {}))
            if namespace.get("__doc__") is not None:
                made.__doc__ = namespace["__doc__"]
            for key, value in namespace.items():
                if key not in _MADE and key not in fields:
                    setattr(made, key, value)
            return made

    NamedTuple = type.__new__(_Maker, "NamedTuple", (), {})

__all__ = ["NamedTuple"]

"""Sparse attributes: per-object fields that are stored only when they differ from a default.

A node or a distributor holds one record per job, tens of thousands of them, and most records
never use most of their optional fields (a timeout, tags, a trace context, the last error, a
cancel request). A ``__slots__`` slot costs 8 bytes per object whether it is used or not; a
:class:`Sparse` field costs nothing until it is set to something other than its default, and
then lives in one small dict per object (the ``sparse`` slot) shared by every sparse field of
that object. Reading one costs a descriptor call instead of a slot read, so only fields read
off the hot path, or rarely, should be sparse.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar, overload

T = TypeVar("T")


class HasSparse(Protocol):
    """An object with a ``sparse`` slot: None, or the dict of its sparse fields that are set."""

    sparse: dict[str, Any] | None


class Sparse(Generic[T]):
    """A field of a :class:`HasSparse` object that reads ``default`` until it is set.

    Setting the default back while no other sparse field is set frees nothing (the dict stays);
    setting the default on an object with no dict yet allocates nothing.
    """

    __slots__ = ("default", "name")

    def __init__(self, default: T) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Sparse[T]: ...
    @overload
    def __get__(self, obj: HasSparse, owner: type | None = None) -> T: ...
    def __get__(self, obj: HasSparse | None, owner: type | None = None) -> T | Sparse[T]:
        if obj is None:
            return self
        fields = obj.sparse
        if fields is None:
            return self.default
        value: T = fields.get(self.name, self.default)
        return value

    def __set__(self, obj: HasSparse, value: T) -> None:
        fields = obj.sparse
        if fields is None:
            if value is self.default or value == self.default:
                return
            obj.sparse = fields = {}
        fields[self.name] = value

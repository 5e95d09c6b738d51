"""Listeners between parts of a node, as lists wired in `build_node`.

A part that announces something (the router: a group changed, a device was taken over)
holds a `Signal`; the parts that care connect to it when the node is built. Unlike a single
`on_something` attribute, a second listener cannot silently replace the first.
"""

from collections.abc import Callable
from typing import Generic, ParamSpec

P = ParamSpec("P")


class Signal(Generic[P]):
    """Calls every connected listener, in the order they were connected."""

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[P, None]] = []

    def connect(self, listener: Callable[P, None]) -> None:
        self._listeners.append(listener)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for listener in self._listeners:
            listener(*args, **kwargs)

"""A named registry: what the losses, rollout corrections and phase kinds are looked up in.

A dict (so ``name in``, iteration and ``[name]`` work as usual) that refuses to give one name
to two things and answers an unknown name with one line listing the known ones.
Standard library only: the config layer uses it without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    def __init__(self, what: str, sort_names: bool = True) -> None:
        super().__init__()
        self.what, self.sort_names = what, sort_names

    def add(self, name: str, item: T) -> T:
        if name in self and self[name] is not item:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of ``add``."""
        return lambda item: self.add(name, item)

    def lookup(self, name: str) -> T:
        try:
            return self[name]
        except KeyError:
            names = sorted(self) if self.sort_names else list(self)
            raise ValueError(f"unknown {self.what} {name!r}; registered: "
                             f"{', '.join(names)}") from None
